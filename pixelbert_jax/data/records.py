"""Plain records that the dataset readers yield.

Every reader turns an official annotation format into one of these small frozen
dataclasses, so the pipelines, the checker and the evaluators never need to know
which JSON layout an example came from.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ImageText:
  """One caption (or region phrase) paired with the whole image it describes.

  Attributes:
    image_id: the dataset's image id, as a string (COCO ids are ints, Flickr30K
      ids are file stems, so a string serves both).
    image_path: where the image file lives (local path or `gs://` URL), or its
      place in a tar or parquet shard ("00000.tar#000000012.jpg": see
      `images.member_path`).
    text: the caption, stripped of surrounding white space.
    source: the dataset it came from, e.g. "coco", "karpathy_coco", "vg", "cc3m".
  """
  image_id: str
  image_path: str
  text: str
  source: str


@dataclasses.dataclass(frozen=True)
class RetrievalItem:
  """One image with all of its captions, the unit of retrieval evaluation."""
  image_id: str
  image_path: str
  texts: tuple[str, ...]
  source: str


@dataclasses.dataclass(frozen=True)
class VqaExample:
  """One VQA question about one image.

  Attributes:
    question_id: the official question id (the key of a results file).
    image_id: the COCO image id, as a string.
    image_path: where the image file lives.
    question: the question text.
    answers: the 10 annotator answers as given; empty for test splits.
    answer_type: "yes/no", "number" or "other"; empty for test splits.
    question_type: e.g. "what color is the"; empty for test splits.
  """
  question_id: int
  image_id: str
  image_path: str
  question: str
  answers: tuple[str, ...] = ()
  answer_type: str = ""
  question_type: str = ""


@dataclasses.dataclass(frozen=True)
class Nlvr2Example:
  """One NLVR2 statement about a pair of images.

  Attributes:
    identifier: the official id, "split-set-pair-sentence".
    sentence: the statement.
    left_path: the left image ("...-img0.png").
    right_path: the right image ("...-img1.png").
    label: whether the statement is true; None where labels are hidden.
  """
  identifier: str
  sentence: str
  left_path: str
  right_path: str
  label: bool | None
