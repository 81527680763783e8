"""NLVR2 JSON-lines files (`train.json`, `dev.json`, `test1.json`) and their image pairs.

Each line holds an `identifier` "split-set-pair-sentence", a `sentence` and a
`label` "True"/"False"; its two images are "split-set-pair-img0.png" (left) and
"-img1.png" (right). Train images are spread over numbered sub-folders named by
the line's `directory` field; dev and test images sit in one folder per split.
A pair whose image file is missing is skipped, so training never meets it.
"""

from __future__ import annotations

from typing import Iterator

from etils import epath

from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import common

_LABELS = {"true": True, "false": False}


def pair_file_names(identifier: str) -> tuple[str, str]:
  """("split-set-pair-img0.png", "split-set-pair-img1.png") for an identifier."""
  stem = identifier.rsplit("-", 1)[0]
  return f"{stem}-img0.png", f"{stem}-img1.png"


def _find_image(image_dir: epath.Path, entry: dict, name: str) -> epath.Path | None:
  """The image file, looked up where NLVR2 keeps it; None if it is not there."""
  split = name.split("-", 1)[0]
  candidates = [image_dir / split / str(entry.get("directory", "")) / name,
                image_dir / split / name, image_dir / name]
  for candidate in candidates:
    if candidate.exists():
      return candidate
  return None


def _label(entry: dict, identifier: str, skips: skips_lib.SkipCounter
           ) -> tuple[bool, bool | None]:
  """(usable, label): a missing label is None (hidden test), a bad one is skipped."""
  raw = entry.get("label")
  if raw is None:
    return True, None
  if isinstance(raw, bool):
    return True, raw
  label = _LABELS.get(str(raw).strip().lower())
  if label is None:
    skips.skip(common.BAD_LABEL, identifier, f"label {raw!r}")
    return False, None
  return True, label


def identifiers(jsonl_file: epath.PathLike) -> list[str]:
  """Every identifier of a JSON-lines file, in order: what a prediction file for it
  must cover, including the lines `read_nlvr2` skips (a line that is not JSON or
  has no identifier has none to give, and is counted by `read_nlvr2`)."""
  found = []
  for _, entry in common.iter_json_lines(jsonl_file, skips_lib.SkipCounter("nlvr2-ids")):
    if isinstance(entry.get("identifier"), str):
      found.append(entry["identifier"])
  return found


def read_nlvr2(jsonl_file: epath.PathLike, image_dir: epath.PathLike, *,
               skips: skips_lib.SkipCounter | None = None
               ) -> Iterator[records.Nlvr2Example]:
  """Yields one `Nlvr2Example` per usable line.

  Args:
    jsonl_file: e.g. `dev.json` (one JSON object per line).
    image_dir: the folder holding `train/`, `dev/`, `test1/` image folders.
    skips: where malformed entries are counted (a new counter if None).
  """
  skips = common.counter_or_new(skips, "nlvr2")
  image_dir = epath.Path(image_dir)
  for number, entry in common.iter_json_lines(jsonl_file, skips):
    identifier = entry.get("identifier") or f"{epath.Path(jsonl_file).name}:{number}"
    if not common.require(entry, ("identifier", "sentence"), identifier, skips):
      continue
    sentence = common.checked_text(entry["sentence"], identifier, skips)
    usable, label = _label(entry, identifier, skips)
    if sentence is None or not usable:
      continue
    paths = [_find_image(image_dir, entry, n) for n in pair_file_names(identifier)]
    if None in paths:
      skips.skip(common.MISSING_IMAGE, identifier, "image pair not found")
      continue
    yield records.Nlvr2Example(identifier, sentence, str(paths[0]), str(paths[1]), label)
