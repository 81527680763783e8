"""The synthetic world's web corpora, in the layouts the real ones come in.

One pool of web-style images, each with one noisy caption (extra white space, alt-text
debris, a few non-English words, some captions shared by several images), written as:

  web/cc3m/Train_GCC-training.tsv, web/cc3m/images/     CC3M: caption<TAB>url, and
                                                       the images img2dataset-style
  web/cc12m/cc12m.tsv, web/cc12m/images/               CC12M: url<TAB>caption
  web/sbu/SBU_captioned_photo_dataset_{urls,captions}.txt, web/sbu/images/
                                                       SBU, images named as in the url
  web/img2dataset/SSSSS.{tar,parquet}, SSSSS_stats.json   img2dataset webdataset
  web/img2dataset_files/SSSSS/, SSSSS.parquet, ...        img2dataset files
  web/img2dataset_parquet/SSSSS.parquet, ...              img2dataset parquet (bytes)

Some urls are dead: their images are not in the folders, and img2dataset lists them
as failed downloads; one img2dataset sample has an empty caption (its alt text was
empty). The pool has its own random streams, so it changes no other file of the world.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import numpy as np

from pixelbert_jax.data.synthetic.language import make_captions
from pixelbert_jax.data.synthetic.scenes import render_scene, sample_scene

# The stream key of the web pool (formats.py's data sets use 1-5).
_WEB = 6
# img2dataset's `number_sample_per_shard`, small so that a small world has shards.
SAMPLES_PER_SHARD = 10
# 2026-11-27 00:00 UTC: tar members and stats carry fixed times, for identical bytes.
_MTIME = 1_795_737_600
_ALT_TEXT = ("IMG_{n:04d}.jpg", "stock photo", "| free download", "click to enlarge",
             "photo by user{n}", "&amp; more", "image may contain:")
_FOREIGN = ("foto", "Bild", "très joli", "写真", "фото", "imagen de", "ein Bild von")
_GENERIC = "Image result for shapes"  # alt text that many pages share


def _rng(seed: int, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, _WEB, index])


def _is_dead(index: int) -> bool:
  """Every 7th url (from the 4th) is dead: not downloaded, a failed download."""
  return index % 7 == 3


def _noisy(caption: str, rng: np.random.Generator, index: int) -> str:
  """A web caption: the clean one with some of the noise alt texts carry."""
  if index % 11 == 5:
    return _GENERIC  # duplicates across images, as scraped alt text has
  words = caption.rstrip(".").split()
  if rng.random() < 0.3:
    words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(_FOREIGN)))
  if rng.random() < 0.3:
    noise = str(rng.choice(_ALT_TEXT)).format(n=int(rng.integers(0, 10_000)))
    words = [noise] + words if rng.random() < 0.5 else words + [noise]
  gap = " " * int(rng.integers(1, 4)) if rng.random() < 0.3 else " "
  text = gap.join(words)
  return ("  " + text + " ") if rng.random() < 0.2 else text


def _draw_pool(seed: int, count: int) -> list[dict]:
  """Per pool image: its caption, url, and JPEG bytes and size (None if dead)."""
  pool = []
  for index in range(count):
    rng = _rng(seed, index)
    scene = sample_scene(rng)
    caption = _noisy(make_captions(scene, rng, count=1)[0], rng, index)
    photo = f"{4_000_000_000 + 7919 * index}_{index * 2654435761 % 16**10:010x}"
    entry = {"caption": caption, "photo": photo,
             "url": f"http://static.flickr.example/{index % 97}/{photo}.jpg",
             "jpeg": None, "size": (scene.width, scene.height)}
    if not _is_dead(index):
      buffer = io.BytesIO()
      render_scene(scene, rng).save(buffer, format="JPEG", quality=90)
      entry["jpeg"] = buffer.getvalue()
    pool.append(entry)
  return pool


def _write(path: str, data: bytes | str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data.encode("utf-8") if isinstance(data, str) else data)
  return path


def _write_cc(root: str, tsv_name: str, pool: list[dict], caption_first: bool) -> str:
  """A Conceptual Captions TSV and the images in img2dataset's `files` layout."""
  rows = []
  for index, entry in enumerate(pool):
    fields = (entry["caption"], entry["url"])
    rows.append("\t".join(fields if caption_first else fields[::-1]))
    if entry["jpeg"] is not None:
      _write(os.path.join(root, "images", f"{index // 10_000:05d}", f"{index:09d}.jpg"),
             entry["jpeg"])
  return _write(os.path.join(root, tsv_name), "\n".join(rows) + "\n")


def _write_sbu(root: str, pool: list[dict]) -> dict[str, str]:
  for entry in pool:
    if entry["jpeg"] is not None:
      _write(os.path.join(root, "images", f"{entry['photo']}.jpg"), entry["jpeg"])
  return {
      "sbu_urls": _write(os.path.join(root, "SBU_captioned_photo_dataset_urls.txt"),
                         "".join(f"{e['url']}\n" for e in pool)),
      "sbu_captions": _write(
          os.path.join(root, "SBU_captioned_photo_dataset_captions.txt"),
          "".join(f"{e['caption']}\n" for e in pool)),
      "sbu_images": os.path.join(root, "images")}


def _metadata(entry: dict, key: str, caption: str) -> dict:
  """A sample's metadata as img2dataset's downloader records it (no exif)."""
  ok = entry["jpeg"] is not None
  width, height = entry["size"] if ok else (None, None)
  return {"caption": caption, "url": entry["url"], "key": key,
          "status": "success" if ok else "failed_to_download",
          "error_message": None if ok else "HTTP Error 404: Not Found",
          "width": width, "height": height, "original_width": width,
          "original_height": height,
          "sha256": hashlib.sha256(entry["jpeg"]).hexdigest() if ok else None}


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size, info.mtime, info.mode = len(data), _MTIME, 0o444
  tar.addfile(info, io.BytesIO(data))


def _parquet(rows: list[dict], path: str, images: list | None = None) -> None:
  """img2dataset's metadata parquet (with the `jpg` bytes column if `images`)."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  fields = [("caption", pa.string()), ("url", pa.string()), ("key", pa.string()),
            ("status", pa.string()), ("error_message", pa.string()),
            ("width", pa.int32()), ("height", pa.int32()),
            ("original_width", pa.int32()), ("original_height", pa.int32()),
            ("sha256", pa.string())]
  columns = {name: [row[name] for row in rows] for name, _ in fields}
  if images is not None:
    fields.append(("jpg", pa.binary()))
    columns["jpg"] = images
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pq.write_table(pa.Table.from_pydict(columns, pa.schema(fields)), path)


def _stats(rows: list[dict]) -> str:
  failed = sum(row["status"] != "success" for row in rows)
  status = {"success": len(rows) - failed}
  if failed:
    status["HTTP Error 404: Not Found"] = failed
  return json.dumps({"count": len(rows), "successes": len(rows) - failed,
                     "failed_to_download": failed, "failed_to_resize": 0,
                     "duration": 1.0, "start_time": float(_MTIME),
                     "end_time": _MTIME + 1.0, "status_dict": status}, indent=4)


def _write_img2dataset(out: str, pool: list[dict]) -> dict[str, str]:
  """The pool downloaded by img2dataset in its three output formats."""
  roots = {name: os.path.join(out, "web", name) for name in
           ("img2dataset", "img2dataset_files", "img2dataset_parquet")}
  digits = len(str(SAMPLES_PER_SHARD - 1))  # img2dataset's oom_sample_per_shard
  for first in range(0, len(pool), SAMPLES_PER_SHARD):
    shard = first // SAMPLES_PER_SHARD
    rows, tar_path = [], os.path.join(roots["img2dataset"], f"{shard:05d}.tar")
    os.makedirs(roots["img2dataset"], exist_ok=True)
    with tarfile.open(tar_path, "w") as tar:
      for offset, entry in enumerate(pool[first:first + SAMPLES_PER_SHARD]):
        key = f"{shard * 10**digits + offset:0{5 + digits}d}"
        # Sample 9 (a success) lost its alt text: its caption is empty.
        caption = "" if first + offset == 9 else entry["caption"]
        rows.append(_metadata(entry, key, caption))
        if entry["jpeg"] is None:
          continue  # img2dataset writes no member and no file for a failed download
        member = {"jpg": entry["jpeg"], "json": json.dumps(rows[-1], indent=4).encode(),
                  "txt": caption.encode("utf-8")}
        for extension, data in member.items():  # webdataset writes them sorted
          _tar_add(tar, f"{key}.{extension}", data)
          _write(os.path.join(roots["img2dataset_files"], f"{shard:05d}",
                              f"{key}.{extension}"), data)
    for name, root in roots.items():
      images = ([e["jpeg"] for e in pool[first:first + SAMPLES_PER_SHARD]]
                if name == "img2dataset_parquet" else None)
      _parquet(rows, os.path.join(root, f"{shard:05d}.parquet"), images)
      _write(os.path.join(root, f"{shard:05d}_stats.json"), _stats(rows))
  return roots


def write_web(out: str, seed: int, count: int) -> dict[str, str]:
  """Writes the web corpora of a pool of `count` images under `out`/web."""
  pool = _draw_pool(seed, count)
  root = os.path.join(out, "web")
  paths = {"web_root": root,
           "cc3m_tsv": _write_cc(os.path.join(root, "cc3m"), "Train_GCC-training.tsv",
                                 pool, caption_first=True),
           "cc3m_images": os.path.join(root, "cc3m", "images"),
           "cc12m_tsv": _write_cc(os.path.join(root, "cc12m"), "cc12m.tsv", pool,
                                  caption_first=False),
           "cc12m_images": os.path.join(root, "cc12m", "images")}
  paths.update(_write_sbu(os.path.join(root, "sbu"), pool))
  paths.update(_write_img2dataset(out, pool))
  return paths
