"""`python -m npvae.run`: Train one model and write its run folder and REPORT.md. The command lives
in npvae/runs/runner.py."""
import sys

from npvae.runs.runner import main

if __name__ == "__main__":
    sys.exit(main())
