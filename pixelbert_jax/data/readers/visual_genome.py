"""Visual Genome region descriptions, each phrase paired with the whole image.

Pixel-BERT pre-trains on VG region phrases as if they were captions of the
whole image (the box is not used). `image_data.json` maps image ids to files:
its `url` ends in `VG_100K/<id>.jpg` or `VG_100K_2/<id>.jpg`, the two folders
the images ship in. Images shared with COCO can be left out by COCO id, e.g. to
keep the Karpathy val/test images out of pre-training.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from etils import epath

from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import common


def _image_paths(image_data_file: epath.PathLike, image_root: epath.Path,
                 exclude_coco_ids: set[int], skips: skips_lib.SkipCounter
                 ) -> tuple[dict[int, str], set[int]]:
  """(image id -> file path, ids left out because their COCO id is excluded)."""
  paths, left_out = {}, set()
  for index, image in enumerate(common.load_json(image_data_file, list)):
    image_id = image.get("image_id", image.get("id")) if isinstance(image, dict) else None
    if image_id is None:
      skips.skip(common.MISSING_FIELD, common.entry_name(image_data_file, "", index),
                 "no image_id")
      continue
    if image.get("coco_id") in exclude_coco_ids:
      left_out.add(image_id)
      continue
    url = image.get("url") or f"VG_100K/{image_id}.jpg"
    folder, file_name = url.rstrip("/").split("/")[-2:]
    paths[image_id] = str(image_root / folder / file_name)
  return paths, left_out


def read_visual_genome(region_descriptions: epath.PathLike,
                       image_data: epath.PathLike, image_root: epath.PathLike, *,
                       exclude_coco_ids: Iterable[int] = (),
                       skips: skips_lib.SkipCounter | None = None
                       ) -> Iterator[records.ImageText]:
  """Yields one `ImageText` per region phrase, paired with the whole image.

  Args:
    region_descriptions: `region_descriptions.json`.
    image_data: `image_data.json`.
    image_root: the folder holding `VG_100K/` and `VG_100K_2/`.
    exclude_coco_ids: COCO ids of images to leave out entirely.
    skips: where malformed entries are counted (a new counter if None).
  """
  skips = common.counter_or_new(skips, "visual_genome")
  paths, left_out = _image_paths(image_data, epath.Path(image_root),
                                 set(exclude_coco_ids), skips)
  for index, entry in enumerate(common.load_json(region_descriptions, list)):
    image_id = entry.get("id") if isinstance(entry, dict) else None
    if image_id is None or not isinstance(entry.get("regions"), list):
      skips.skip(common.MISSING_FIELD,
                 common.entry_id(entry, "id", region_descriptions, "", index),
                 "no id or regions")
      continue
    if image_id in left_out:
      continue
    if image_id not in paths:
      skips.skip(common.MISSING_IMAGE, f"image {image_id}", "not in image_data.json")
      continue
    yield from _phrases(entry["regions"], image_id, paths[image_id], skips)


def _phrases(regions: list, image_id: int, path: str,
             skips: skips_lib.SkipCounter) -> Iterator[records.ImageText]:
  for number, region in enumerate(regions):
    region_id = region.get("region_id") if isinstance(region, dict) else None
    example_id = (f"region {region_id}" if region_id is not None
                  else f"image {image_id} regions[{number}]")
    phrase = region.get("phrase") if isinstance(region, dict) else None
    text = common.checked_text(phrase, example_id, skips)
    if text is not None:
      yield records.ImageText(str(image_id), path, text, "vg")
