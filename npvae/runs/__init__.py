"""One run end to end, `python -m npvae.run`: the runner (runner.py: flags, the run folder,
training with kill -9 resume, then summary, figures and report) and the run folder
(rundir.py: its files, its lock, re-rendering a finished run, `python -m npvae.report`). It
may import every floor below it (core, engine, training, reporting), never experiments or the
estimator.
"""
