"""What every benchmark does with its table: print it and write it to its results file."""

import os


def publish(text: str, out: str) -> None:
  """Prints `text` and writes it to `out` (its folder created if needed)."""
  print(text)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w", encoding="utf-8") as f:
    f.write(text)
