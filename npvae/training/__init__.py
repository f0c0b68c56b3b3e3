"""From data and settings to trained parameters: the data (data.py, IDX files in idx.py), the
settings from the command line, TOML files and presets (cli.py, tomlfile.py, presets/),
atomic file writes (fileio.py), checkpoints and the resume point (checkpoint.py), what a run
carries (state.py: TrainState, FitResult) and the training loop (loop.py: epochs, early
stopping, one step path for every engine). It may import npvae.core and npvae.engine, never
reporting, runs, experiments or the estimator.
"""
