"""Metrics (one function for every number: training, evaluate, reports, sweeps) and the
evaluation of a model on a labelled split."""
