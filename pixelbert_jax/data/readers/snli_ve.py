"""SNLI-VE JSON-lines files (`snli_ve_{train,dev,test}.jsonl`) and their Flickr30K images.

The format is the one `vet/tools/snli_ve_generator.py` writes at the head of
necla-ml/SNLI-VE (commit e6cf745d2e677a2ad878b3cc095cde75c0bbb144): each line is an
SNLI entry (`pairID`, `sentence1` the caption, `sentence2` the hypothesis,
`gold_label`, `annotator_labels`, ...) with `Flickr30K_ID`, the premise image,
`<Flickr30K_ID>.jpg` in Flickr30K's image folder. The generator keeps only entries
whose `gold_label` is not "-". An entry with another label, no hypothesis or no image
is skipped with its reason; `identifiers` lists every entry's `pairID` for the
prediction file.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

from etils import epath

from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import common

LABELS = ("entailment", "neutral", "contradiction")
_KEYS = ("pairID", "Flickr30K_ID", "sentence2", "gold_label")


@dataclasses.dataclass(frozen=True)
class SnliVeExample:
  """One (image premise, text hypothesis) pair; `label` indexes LABELS."""
  identifier: str  # the SNLI pairID
  image_path: str
  hypothesis: str
  label: int


def identifiers(jsonl_file: epath.PathLike) -> list[str]:
  """Every `pairID` of a file, in order, including entries `read_snli_ve` skips."""
  skips = skips_lib.SkipCounter("snli_ve-ids")
  return [entry["pairID"] for _, entry in common.iter_json_lines(jsonl_file, skips)
          if isinstance(entry.get("pairID"), str)]


def read_snli_ve(jsonl_file: epath.PathLike, image_dir: epath.PathLike, *,
                 skips: skips_lib.SkipCounter | None = None
                 ) -> Iterator[SnliVeExample]:
  """Yields one `SnliVeExample` per usable line.

  Args:
    jsonl_file: e.g. `snli_ve_dev.jsonl`.
    image_dir: Flickr30K's image folder (`flickr30k-images/`).
    skips: where malformed entries are counted (a new counter if None).
  """
  skips = common.counter_or_new(skips, "snli_ve")
  image_dir = epath.Path(image_dir)
  for number, entry in common.iter_json_lines(jsonl_file, skips):
    identifier = entry.get("pairID") or f"{epath.Path(jsonl_file).name}:{number}"
    if not common.require(entry, _KEYS, identifier, skips):
      continue
    hypothesis = common.checked_text(entry["sentence2"], identifier, skips)
    if hypothesis is None:
      continue
    if entry["gold_label"] not in LABELS:
      skips.skip(common.BAD_LABEL, identifier, f"gold_label {entry['gold_label']!r}")
      continue
    path = image_dir / f"{entry['Flickr30K_ID']}.jpg"
    if not path.exists():
      skips.skip(common.MISSING_IMAGE, identifier, f"{path.name} not found")
      continue
    yield SnliVeExample(str(identifier), str(path), hypothesis,
                        LABELS.index(entry["gold_label"]))
