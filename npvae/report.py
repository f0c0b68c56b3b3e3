"""`python -m npvae.report`: Re-draw the figures and REPORT.md of a finished run folder, without
training. The command lives in npvae/runs/rundir.py."""
import sys

from npvae.runs.rundir import report_main as main

if __name__ == "__main__":
    sys.exit(main())
