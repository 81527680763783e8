"""SBU Captions: the official release's two line-aligned text files, and the images.

  SBU_captioned_photo_dataset_urls.txt       one Flickr url per line
  SBU_captioned_photo_dataset_captions.txt   the caption of the same line's photo

The user downloads the images; by default each is saved under its url's file name,
Flickr's `{photo id}_{secret}.jpg` (what wget and most download scripts do), and the
photo's image id is that name's stem. Another layout is a pattern away
(`common.image_name`: "{shard:05d}/{index:09d}.jpg" for img2dataset's `files` layout).

Skips, each named `file:line`: a missing image (dead urls are common), an unusable
caption, a line without a url. Files of different lengths are not line-aligned, so
nothing can be paired: that raises `common.DataFileError` naming both files.
"""

from __future__ import annotations

import itertools
from typing import Iterator

from etils import epath

from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import common

URLS_FILE = "SBU_captioned_photo_dataset_urls.txt"
CAPTIONS_FILE = "SBU_captioned_photo_dataset_captions.txt"


def read_sbu(urls_file: epath.PathLike, captions_file: epath.PathLike,
             image_dir: epath.PathLike, *, image_pattern: str = common.URL_NAME_PATTERN,
             skips: skips_lib.SkipCounter | None = None,
             source: str = "sbu") -> Iterator[records.ImageText]:
  """Yields one `ImageText` per photo whose image was downloaded.

  Args:
    urls_file: `SBU_captioned_photo_dataset_urls.txt`.
    captions_file: `SBU_captioned_photo_dataset_captions.txt`.
    image_dir: the folder the images were downloaded into.
    image_pattern: line i's image under `image_dir` (`common.image_name`).
    skips: where skipped photos are counted (a new counter if None).
    source: the `source` field of the records.
  """
  common.check_image_pattern(image_pattern)
  skips = common.counter_or_new(skips, source)
  image_dir, files = epath.Path(image_dir), common.FileIndex()
  urls_name, captions_name = epath.Path(urls_file).name, epath.Path(captions_file).name
  lines = itertools.zip_longest(common.iter_lines(urls_file),
                                common.iter_lines(captions_file))
  for count, (url_line, caption_line) in enumerate(lines):
    if url_line is None or caption_line is None:
      raise common.DataFileError(
          f"{urls_file} and {captions_file} are not line-aligned: one ends after "
          f"{count} lines, the other goes on; is one of them cut short?")
    (number, url), (_, caption) = url_line, caption_line
    text = common.checked_text(caption, f"{captions_name}:{number}", skips)
    if text is None:
      continue
    url = url.strip()
    if not common.url_name(url):
      skips.skip(common.MALFORMED_ROW, f"{urls_name}:{number}", f"no url: {url!r:.60}")
      continue
    path = image_dir / common.image_name(image_pattern, number - 1, url)
    if not files.exists(path):
      skips.skip(common.MISSING_IMAGE, f"{urls_name}:{number}", f"no image at {path}")
      continue
    yield records.ImageText(common.url_name(url).rsplit(".", 1)[0], str(path), text,
                            source)
