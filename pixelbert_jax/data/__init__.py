"""Data: the synthetic world, readers of the official formats, preprocessing and pipelines."""
