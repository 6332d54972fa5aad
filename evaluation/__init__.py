"""Model evaluation through the served pipeline (may import both `models` and `transformers_pre`).

`models` builds models and never imports the transformer; this package measures a built model the way the
transformer serves it, and its numbers are what the model cards report.
"""
