"""`python -m npvae.active_report`: Re-draw an active-learning folder's report, or merge folders
(--merge). The command lives in npvae/experiments/active/report.py."""
import sys

from npvae.experiments.active.report import main

if __name__ == "__main__":
    sys.exit(main())
