"""Experiment configs: one file per task, variants after a colon (`file.py:variant`)."""
