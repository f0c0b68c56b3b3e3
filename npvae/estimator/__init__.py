"""The scikit-learn face: MixtureVAEClassifier (classifier.py), fit(X, y with -1 = unlabeled),
predict, predict_proba, transform, sample, save and load, with input checking (inputs.py). It
may import every floor up to npvae.runs, never npvae.experiments.
"""
