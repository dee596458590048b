"""Evaluation of Rased's models on data in the public data sets' formats (`rased-eval`)."""
