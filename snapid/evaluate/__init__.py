"""Evaluation: metrics (pure), calibration, ensembles, reports."""
