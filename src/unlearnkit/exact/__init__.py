"""Exact and certified unlearning: training-time structures that make a later deletion cheap and provable.

``sisa`` trains sharded, sliced ensembles whose deletions retrain only the affected shard from a saved slice
(Bourtoule et al., IEEE S&P 2021; ``sisa_io`` holds its files on disk); ``linear`` removes samples from the
convex ``linear`` / ``logistic`` models by one Newton step with a certified bound on the distance to
retraining (Guo et al., ICML 2020; the models and their training to the optimum are in
``unlearnkit.models.convex``, below training); ``updates`` records every training step's parameter update so
that amnesiac unlearning can subtract the steps that saw the forgotten samples (Graves et al., AAAI 2021).
The methods ``sisa``, ``certified`` and ``amnesiac`` in ``unlearnkit.methods`` drive them. This folder sits
above ``train.py`` and ``models/`` and below ``methods/``: nothing here imports a method, the CLI or the benches.
"""
