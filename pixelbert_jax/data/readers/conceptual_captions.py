"""Conceptual Captions: CC3M and CC12M, the official TSV files with downloaded images.

The official files list urls, not images:

  CC3M   Train_GCC-training.tsv, Validation_GCC-1.1.0-Validation.tsv: `caption<TAB>url`
  CC12M  cc12m.tsv: `url<TAB>caption`

both without a header, one pair per line. The user downloads the images; row i's
image is found by a file name pattern (`common.INDEX_PATTERN`), by default
img2dataset's `files` layout, `{shard:05d}/{index:09d}.jpg` under the image folder,
where `index` is the row's 0-based line position in the official file (img2dataset
run on the file with a header line added gives exactly these names). A layout named
after the url (`"{url_name}"`) or a flat one (`"{index}.jpg"`) is one pattern away.

Many urls are dead (about 15 % of CC3M's), so a row whose image is not in the folder
is a counted skip (`missing_image`), as are rows without a usable caption and
malformed rows (not two fields); each is named by `file:line`. A web corpus needs a
higher `max_skip_fraction` than the curated data sets for this reason.
"""

from __future__ import annotations

from typing import Iterator

from etils import epath

from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import common

CC3M_TRAIN_TSV = "Train_GCC-training.tsv"
CC3M_VAL_TSV = "Validation_GCC-1.1.0-Validation.tsv"
CC12M_TSV = "cc12m.tsv"


def read_conceptual_captions(tsv: epath.PathLike, image_dir: epath.PathLike, *,
                             caption_first: bool,
                             image_pattern: str = common.INDEX_PATTERN,
                             skips: skips_lib.SkipCounter | None = None,
                             source: str = "cc") -> Iterator[records.ImageText]:
  """Yields one `ImageText` per row of a Conceptual Captions TSV whose image is there.

  Args:
    tsv: the official TSV file.
    image_dir: the folder the images were downloaded into.
    caption_first: True for CC3M (`caption, url`), False for CC12M (`url, caption`).
    image_pattern: row i's image under `image_dir` (`common.image_name`).
    skips: where skipped rows are counted (a new counter if None).
    source: the `source` field of the records.
  """
  common.check_image_pattern(image_pattern)
  skips = common.counter_or_new(skips, source)
  image_dir, files = epath.Path(image_dir), common.FileIndex()
  name = epath.Path(tsv).name
  for number, line in common.iter_lines(tsv):
    row_id = f"{name}:{number}"
    fields = line.split("\t")
    if len(fields) != 2:
      skips.skip(common.MALFORMED_ROW, row_id, f"{len(fields)} tab-separated fields, "
                 "expected 2")
      continue
    caption, url = fields if caption_first else fields[::-1]
    text = common.checked_text(caption, row_id, skips)
    if text is None:
      continue
    path = image_dir / common.image_name(image_pattern, number - 1, url)
    if not files.exists(path):
      skips.skip(common.MISSING_IMAGE, row_id, f"no image at {path} (url {url:.80})")
      continue
    yield records.ImageText(str(number - 1), str(path), text, source)


def read_cc3m(tsv: epath.PathLike, image_dir: epath.PathLike, *,
              image_pattern: str = common.INDEX_PATTERN,
              skips: skips_lib.SkipCounter | None = None) -> Iterator[records.ImageText]:
  """CC3M's `caption<TAB>url` TSV; see `read_conceptual_captions`."""
  return read_conceptual_captions(tsv, image_dir, caption_first=True,
                                  image_pattern=image_pattern, skips=skips,
                                  source="cc3m")


def read_cc12m(tsv: epath.PathLike, image_dir: epath.PathLike, *,
               image_pattern: str = common.INDEX_PATTERN,
               skips: skips_lib.SkipCounter | None = None) -> Iterator[records.ImageText]:
  """CC12M's `url<TAB>caption` TSV; see `read_conceptual_captions`."""
  return read_conceptual_captions(tsv, image_dir, caption_first=False,
                                  image_pattern=image_pattern, skips=skips,
                                  source="cc12m")
