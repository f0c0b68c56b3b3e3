"""`python -m npvae.sweep`: Many runs over a grid of settings and seeds, locally or on Dask, with a
table of means and intervals. The command lives in npvae/experiments/sweep/command.py."""
import sys

from npvae.experiments.sweep.command import main

if __name__ == "__main__":
    sys.exit(main())
