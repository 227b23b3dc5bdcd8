"""Metric definitions, one module per family; each definition lives in exactly one place."""
