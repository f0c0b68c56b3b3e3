"""`python -m npvae.app [RUN_DIR | --data PATH] [--preset NAME]`: the labelling web app. The
command lives in npvae/app/command.py."""
import sys

from npvae.app.command import main

if __name__ == "__main__":
    sys.exit(main())
