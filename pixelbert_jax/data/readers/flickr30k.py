"""Flickr30K in Karpathy's split file `dataset_flickr30k.json`.

Same layout as `dataset_coco.json` without `filepath` or `cocoid`: all images
sit in one folder (`flickr30k-images/`), and the image id is the file stem.
Splits are train / val / test (1,000 test images in the real file).
"""

from __future__ import annotations

from typing import Iterable, Iterator

from etils import epath

from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import coco
from pixelbert_jax.data.readers import common


def _entries(dataset_json, image_dir, splits, skips):
  image_dir = epath.Path(image_dir)
  return coco.karpathy_entries(dataset_json, splits,
                               lambda image: str(image_dir / image["filename"]), skips)


def read_flickr30k(dataset_json: epath.PathLike, image_dir: epath.PathLike,
                   splits: Iterable[str] = ("train",), *,
                   skips: skips_lib.SkipCounter | None = None
                   ) -> Iterator[records.ImageText]:
  """Yields one `ImageText` per caption of the chosen splits.

  Args:
    dataset_json: Karpathy's `dataset_flickr30k.json`.
    image_dir: the folder of images, `flickr30k-images/`.
    splits: any of "train", "val", "test".
    skips: where malformed entries are counted (a new counter if None).
  """
  skips = common.counter_or_new(skips, "flickr30k")
  for image_id, path, texts in _entries(dataset_json, image_dir, splits, skips):
    for text in texts:
      yield records.ImageText(image_id, path, text, "flickr30k")


def read_flickr30k_retrieval(dataset_json: epath.PathLike, image_dir: epath.PathLike,
                             split: str = "test", *,
                             skips: skips_lib.SkipCounter | None = None
                             ) -> Iterator[records.RetrievalItem]:
  """Yields one `RetrievalItem` (an image and its 5 captions) per image."""
  skips = common.counter_or_new(skips, "flickr30k")
  for image_id, path, texts in _entries(dataset_json, image_dir, (split,), skips):
    yield records.RetrievalItem(image_id, path, tuple(texts), "flickr30k")
