"""Helpers the format readers share: reading JSON, checking text fields, naming entries.

Files are read through `etils.epath`, so local paths and `gs://` URLs both work.
Bytes are decoded with `surrogateescape`, so one entry with invalid UTF-8 is
caught (and skipped) on its own instead of failing the whole file. A file that
cannot be parsed at all raises `DataFileError`, naming the file and the position.
Skipped entries are named by what a user can search for: an official id, or the
file and the entry's place in it (`entry_name`).
"""

from __future__ import annotations

import collections
import json
from typing import Any, Iterator
import urllib.parse

from etils import epath

from pixelbert_jax.data import skips as skips_lib

# The reasons readers give for skipping an entry.
MISSING_FIELD = "missing_field"
EMPTY_TEXT = "empty_text"
BAD_ENCODING = "bad_encoding"
BAD_JSON = "bad_json"
BAD_LABEL = "bad_label"
MISSING_IMAGE = "missing_image"
MISSING_ANNOTATION = "missing_annotation"
MALFORMED_ROW = "malformed_row"  # a TSV row without the expected fields
DOWNLOAD_FAILED = "download_failed"  # img2dataset's status for the sample is no success

_JSON_NAMES = {dict: "object", list: "array"}  # for errors: what the top level must be


class DataFileError(ValueError):
  """A data file that cannot be parsed; the message names the file and where."""


def read_text(path: epath.PathLike) -> str:
  """A file's text; invalid UTF-8 bytes survive as lone surrogates."""
  return epath.Path(path).read_bytes().decode("utf-8", errors="surrogateescape")


def load_json(path: epath.PathLike, expected: type = dict) -> Any:
  """Parses a whole JSON file (annotation files are single JSON documents) whose top
  level is of the `expected` type; raises `DataFileError` naming the file otherwise."""
  try:
    value = json.loads(read_text(path))
  except json.JSONDecodeError as error:
    raise DataFileError(
        f"{path}: not valid JSON at line {error.lineno}, column {error.colno} "
        f"({error.msg}); is the file cut short?") from error
  if not isinstance(value, expected):
    raise DataFileError(f"{path}: expected a JSON {_JSON_NAMES[expected]} at the top "
                        f"level, found {type(value).__name__}")
  return value


def entry_name(path: epath.PathLike, field: str, index: int) -> str:
  """Where an entry sits in its file: "file.json field[index]", or "file.json[index]"
  in a file whose top level is the list."""
  return f"{epath.Path(path).name}{f' {field}' if field else ''}[{index}]"


def entry_id(entry: Any, key: str, path: epath.PathLike, field: str,
             index: int) -> object:
  """The entry's official id `key` (a caption id, a question_id, a file name), or,
  without one, where it sits in its file (`entry_name`)."""
  if isinstance(entry, dict) and entry.get(key) is not None:
    return entry[key]
  return entry_name(path, field, index)


def iter_json_lines(path: epath.PathLike, skips: skips_lib.SkipCounter
                    ) -> Iterator[tuple[int, dict]]:
  """(line number, object) per non-blank line of a JSONL file; bad lines skipped."""
  for number, line in enumerate(read_text(path).splitlines(), start=1):
    if not line.strip():
      continue
    try:
      value = json.loads(line)
    except json.JSONDecodeError as error:
      skips.skip(BAD_JSON, f"{epath.Path(path).name}:{number}", str(error))
      continue
    if not isinstance(value, dict):
      skips.skip(BAD_JSON, f"{epath.Path(path).name}:{number}", "not an object")
      continue
    yield number, value


def iter_lines(path: epath.PathLike) -> Iterator[tuple[int, str]]:
  """(line number, text without the line end) per line of a text file, streamed:
  CC12M's TSV is 2.5 GB. Lines end at "\n" only (web captions may hold other line
  separators, e.g. U+2028, which `str.splitlines` would split on)."""
  with epath.Path(path).open("rb") as f:
    for number, line in enumerate(f, start=1):
      yield number, line.decode("utf-8", errors="surrogateescape").rstrip("\r\n")


# Web corpora list urls, and the user downloads the images: row i's image is found by
# a file name pattern with the fields `index` (the row's 0-based position in the
# file), `shard` (index // 10000) and `url_name` (the last part of the url's path).
# The default is img2dataset's `output_format="files"` layout with its default
# 10,000 samples per shard: row 12345 is `00001/000012345.jpg`.
SAMPLES_PER_SHARD = 10_000
INDEX_PATTERN = "{shard:05d}/{index:09d}.jpg"
URL_NAME_PATTERN = "{url_name}"


def url_name(url: str) -> str:
  """The last part of a url's path ("" if none): the name most downloaders save it
  under, e.g. "4385058960_b0f291553e.jpg" for a Flickr url."""
  return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def image_name(pattern: str, index: int, url: str) -> str:
  """The image file of row `index` (with `url`) under `pattern` (see `INDEX_PATTERN`)."""
  return pattern.format(index=index, shard=index // SAMPLES_PER_SHARD,
                        url_name=url_name(url))


def check_image_pattern(pattern: str) -> None:
  """Raises ValueError for a pattern `image_name` cannot fill, before any row is read."""
  try:
    image_name(pattern, 0, "http://example.com/0.jpg")
  except (KeyError, IndexError, ValueError) as error:
    raise ValueError(f"image pattern {pattern!r} cannot be filled ({error!r}); its "
                     "fields are {index}, {shard} and {url_name}") from error


class FileIndex:
  """Which files exist, from one listing per folder instead of one `stat` per file:
  web corpora hold millions of images, often on a network file system or GCS.

  Only the last `max_folders` listings are kept: readers go through a corpus shard
  folder by shard folder.
  """

  def __init__(self, max_folders: int = 16):
    self._max_folders = max_folders
    self._names: collections.OrderedDict[str, frozenset[str]] = collections.OrderedDict()

  def exists(self, path: epath.PathLike) -> bool:
    path = epath.Path(path)
    folder = str(path.parent)
    if folder not in self._names:
      parent = path.parent
      self._names[folder] = frozenset(
          child.name for child in parent.iterdir()) if parent.is_dir() else frozenset()
      if len(self._names) > self._max_folders:
        self._names.popitem(last=False)
    return path.name in self._names[folder]


def text_problem(value: Any) -> str | None:
  """Why `value` is not a usable piece of text, or None if it is."""
  if not isinstance(value, str):  # Absent (None) or not text at all.
    return MISSING_FIELD
  try:
    value.encode("utf-8")
  except UnicodeEncodeError:  # Lone surrogates: the bytes were not UTF-8.
    return BAD_ENCODING
  if not value.strip():
    return EMPTY_TEXT
  return None


def checked_text(value: Any, example_id: object,
                 skips: skips_lib.SkipCounter) -> str | None:
  """The stripped text, or None after reporting why it cannot be used."""
  problem = text_problem(value)
  if problem is not None:
    skips.skip(problem, example_id, f"text field is {value!r:.60}")
    return None
  return value.strip()


def missing_keys(entry: Any, keys: tuple[str, ...]) -> list[str]:
  """The required keys an entry lacks (all of them if it is no dict)."""
  if not isinstance(entry, dict):
    return list(keys)
  return [key for key in keys if entry.get(key) is None]


def require(entry: Any, keys: tuple[str, ...], example_id: object,
            skips: skips_lib.SkipCounter) -> bool:
  """True if the entry has every key; otherwise reports it and returns False."""
  missing = missing_keys(entry, keys)
  if missing:
    skips.skip(MISSING_FIELD, example_id, f"missing {', '.join(missing)}")
    return False
  return True


def counter_or_new(skips: skips_lib.SkipCounter | None, name: str
                   ) -> skips_lib.SkipCounter:
  """The caller's counter, or a fresh one (which still logs every skip)."""
  return skips if skips is not None else skips_lib.SkipCounter(name)
