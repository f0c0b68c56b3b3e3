"""What a trained model is measured and shown by: the metrics (metrics.py: component usage and
entropies, NMI, ARI, matched accuracy), the scikit-learn baselines on the run's split
(baselines.py), the summary of a run (summary.py), the figures (plots.py) and REPORT.md
(report.py). It may import npvae.core, npvae.engine and npvae.training, never runs, experiments
or the estimator.
"""
