"""Inversion: objectives for scipy.optimize, regularisation, uncertainty, executors."""
