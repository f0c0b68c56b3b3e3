"""`python -m npvae.active`: Active learning: query strategies against random labels, or a person
labelling (--annotate). The command lives in npvae/experiments/active/command.py."""
import sys

from npvae.experiments.active.command import main

if __name__ == "__main__":
    sys.exit(main())
