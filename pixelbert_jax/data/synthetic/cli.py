"""The embedded synthetic world: a small, deterministic stand-in for the real data.

The command line that writes it; the line above is also its `--help` text.

Usage:
  python -m pixelbert_jax.data.synthetic --out DIR [--seed S] [--num_images N]
"""

from __future__ import annotations

import argparse
import os
import time

from pixelbert_jax.data.synthetic.formats import generate


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="Folder to write the world into.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_images", type=int, default=1000,
                      help="COCO-style images; other data sets scale with it.")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  paths = generate(args.out, seed=args.seed, num_images=args.num_images)
  seconds = time.perf_counter() - start
  images = sum(name.endswith((".jpg", ".png"))
               for _, _, files in os.walk(args.out) for name in files)
  print(f"Wrote {images} images and {len(paths) - 1} files under {args.out} "
        f"in {seconds:.1f} s ({images / seconds:.0f} images/s).")
