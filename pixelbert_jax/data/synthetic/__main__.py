"""Runs `python -m pixelbert_jax.data.synthetic`; the command line is in `cli`."""

from pixelbert_jax.data.synthetic.cli import main

if __name__ == "__main__":
  main()
