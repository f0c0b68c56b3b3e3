"""`python -m npvae.sweep`: the command and its grid (command.py), one grid point in a worker
process (worker.py), the same on a Dask cluster (cluster.py), the sweep folder's state for
resuming (state.py) and its report (report.py). It may import experiments' floors below
(runs, reporting, training, engine, core), not npvae.experiments.active.
"""
