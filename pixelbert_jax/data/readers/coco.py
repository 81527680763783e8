"""COCO captions (2014 / 2017 annotation JSON) and the Karpathy split `dataset_coco.json`.

`read_coco_captions` pairs each caption of `captions_{train,val}20{14,17}.json`
with its image. `read_karpathy` reads Karpathy's split file, whose `split` field
is one of train / restval / val / test; pre-training uses train + restval and
keeps val / test (the retrieval test images) out. `read_karpathy_retrieval`
yields one item per image with all its captions, for retrieval evaluation.
`karpathy_entries` is shared with the Flickr30K reader (same layout).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from etils import epath

from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import common

PRETRAIN_SPLITS = ("train", "restval")


def _image_paths(data: dict, annotation_file: epath.PathLike, image_dir: epath.Path,
                 skips: skips_lib.SkipCounter) -> dict[int, str]:
  """image id -> file path, from the `images` list of a captions file."""
  paths = {}
  for index, image in enumerate(data.get("images") or ()):
    name = common.entry_id(image, "file_name", annotation_file, "images", index)
    if common.require(image, ("id", "file_name"), name, skips):
      paths[image["id"]] = str(image_dir / image["file_name"])
  return paths


def read_coco_captions(annotation_file: epath.PathLike, image_dir: epath.PathLike,
                       *, skips: skips_lib.SkipCounter | None = None,
                       source: str = "coco") -> Iterator[records.ImageText]:
  """Yields one `ImageText` per caption of a COCO captions JSON file.

  Args:
    annotation_file: e.g. `annotations/captions_train2014.json`.
    image_dir: the folder holding the images, e.g. `train2014/`.
    skips: where malformed captions are counted (a new counter if None).
    source: the `source` field of the records.
  """
  skips = common.counter_or_new(skips, "coco")
  data = common.load_json(annotation_file)
  paths = _image_paths(data, annotation_file, epath.Path(image_dir), skips)
  for index, annotation in enumerate(data.get("annotations") or ()):
    example_id = common.entry_id(annotation, "id", annotation_file, "annotations", index)
    if not common.require(annotation, ("image_id", "caption"), example_id, skips):
      continue
    if annotation["image_id"] not in paths:
      skips.skip(common.MISSING_IMAGE, example_id,
                 f"image_id {annotation['image_id']} is not in `images`")
      continue
    text = common.checked_text(annotation["caption"], example_id, skips)
    if text is not None:
      yield records.ImageText(str(annotation["image_id"]),
                              paths[annotation["image_id"]], text, source)


def karpathy_entries(dataset_json: epath.PathLike, splits: Iterable[str],
                     image_path: Callable[[dict], str],
                     skips: skips_lib.SkipCounter
                     ) -> Iterator[tuple[str, str, list[str]]]:
  """(image id, image path, usable captions) per image of a Karpathy split file.

  Captions are taken from each sentence's `raw` text; unusable ones are skipped
  one by one (named "<image file> sentences[k]"), and an image left with no caption
  is left out as a whole.
  """
  wanted = set(splits)
  for index, image in enumerate(common.load_json(dataset_json).get("images") or ()):
    name = common.entry_id(image, "filename", dataset_json, "images", index)
    if not common.require(image, ("filename", "split", "sentences"), name, skips):
      continue
    if image["split"] not in wanted:
      continue
    image_id = str(image.get("cocoid", image["filename"].rsplit(".", 1)[0]))
    texts = []
    for number, sentence in enumerate(image["sentences"]):
      raw = sentence.get("raw") if isinstance(sentence, dict) else None
      text = common.checked_text(raw, f"{image['filename']} sentences[{number}]", skips)
      if text is not None:
        texts.append(text)
    if texts:
      yield image_id, image_path(image), texts


def karpathy_coco_ids(dataset_json: epath.PathLike, splits: Iterable[str]) -> set[int]:
  """The COCO id of every image of the chosen splits, whatever its captions: the
  images to keep out of other data sets (pre-training's VG keeps out the test split)."""
  wanted, images = set(splits), common.load_json(dataset_json).get("images") or ()
  return {int(image["cocoid"]) for image in images
          if isinstance(image, dict) and image.get("split") in wanted and "cocoid" in image}


def _karpathy_coco_path(image_root: epath.Path) -> Callable[[dict], str]:
  # Karpathy's file names the COCO folder (train2014 / val2014) in `filepath`.
  return lambda image: str(image_root / image.get("filepath", "") / image["filename"])


def read_karpathy(dataset_json: epath.PathLike, image_root: epath.PathLike,
                  splits: Iterable[str] = PRETRAIN_SPLITS, *,
                  skips: skips_lib.SkipCounter | None = None
                  ) -> Iterator[records.ImageText]:
  """Yields one `ImageText` per caption of the chosen Karpathy COCO splits.

  Args:
    dataset_json: Karpathy's `dataset_coco.json`.
    image_root: the COCO folder holding `train2014/` and `val2014/`.
    splits: any of "train", "restval", "val", "test".
    skips: where malformed entries are counted (a new counter if None).
  """
  skips = common.counter_or_new(skips, "karpathy_coco")
  for image_id, path, texts in karpathy_entries(
      dataset_json, splits, _karpathy_coco_path(epath.Path(image_root)), skips):
    for text in texts:
      yield records.ImageText(image_id, path, text, "karpathy_coco")


def read_karpathy_retrieval(dataset_json: epath.PathLike, image_root: epath.PathLike,
                            split: str = "test", *,
                            skips: skips_lib.SkipCounter | None = None
                            ) -> Iterator[records.RetrievalItem]:
  """Yields one `RetrievalItem` (an image and all its captions) per image."""
  skips = common.counter_or_new(skips, "karpathy_coco")
  for image_id, path, texts in karpathy_entries(
      dataset_json, (split,), _karpathy_coco_path(epath.Path(image_root)), skips):
    yield records.RetrievalItem(image_id, path, tuple(texts), "karpathy_coco")
