"""`python -m npvae.active` and `python -m npvae.active_report`: the command (command.py), the
rounds of query, label and warm-started training (loop.py), the query strategies (query.py),
a person answering instead of the known labels (annotate.py) and the report (report.py). It
may import npvae.experiments.sweep (its report helpers) and every floor below.
"""
