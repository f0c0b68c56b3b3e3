"""From data and settings to trained parameters: the data (data.py: loading and fit_to_data;
images.py: the Dataset and its shape and label rules; image files in imagefolder.py, IDX
files in idx.py; splits.py, fingerprint.py), the
settings from the command line, TOML files and presets (cli.py, tomlfile.py, presets/),
atomic file writes (fileio.py), checkpoints and the resume point (checkpoint.py), what a run
carries (state.py: TrainState, FitResult) and the training loop (loop.py: epochs, early
stopping, one step path for every engine). It may import npvae.core and npvae.engine, never
reporting, runs, experiments or the estimator.
"""
