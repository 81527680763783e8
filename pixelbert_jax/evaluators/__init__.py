"""Evaluators: small classes with `run(state)` yielding (name, value), chosen by type."""
