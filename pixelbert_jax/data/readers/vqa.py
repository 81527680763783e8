"""VQA v2: `v2_OpenEnded_mscoco_<subtype>_questions.json` + `v2_mscoco_<subtype>_annotations.json`.

Questions and annotations are joined on `question_id`. Test splits (test-dev,
test-std) ship without annotations: pass `annotations_file=None` and the
examples carry no answers. In an annotated split a question without an
annotation is skipped (reason `missing_annotation`) rather than trained on with
an empty target. Images are `COCO_<folder>_<image_id:012d>.jpg` where the folder
is the `data_subtype` of the questions file (test-dev2015 lives in test2015).
"""

from __future__ import annotations

from typing import Iterator

from etils import epath

from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import common

_QUESTION_KEYS = ("question_id", "image_id", "question")


def image_folder(data_subtype: str) -> str:
  """The COCO image folder of a VQA subtype: test-dev2015 -> test2015."""
  return data_subtype.replace("test-dev", "test")


def _annotations_by_id(annotations_file: epath.PathLike,
                       skips: skips_lib.SkipCounter) -> dict[int, dict]:
  by_id = {}
  for index, annotation in enumerate(common.load_json(annotations_file).get("annotations") or ()):
    example_id = common.entry_id(annotation, "question_id", annotations_file,
                                 "annotations", index)
    if common.require(annotation, ("question_id", "answers"), example_id, skips):
      by_id[annotation["question_id"]] = annotation
  return by_id


def _answers(annotation: dict, question_id: int,
             skips: skips_lib.SkipCounter) -> tuple[str, ...] | None:
  """The annotator answers as given, or None after reporting a malformed list."""
  answers = annotation["answers"]
  texts = [a.get("answer") if isinstance(a, dict) else None for a in answers] \
      if isinstance(answers, list) else []
  if not texts or any(not isinstance(t, str) for t in texts):
    skips.skip(common.MISSING_FIELD, question_id, "answers without `answer` texts")
    return None
  if any(common.text_problem(t) == common.BAD_ENCODING for t in texts):
    skips.skip(common.BAD_ENCODING, question_id, "an answer is not valid UTF-8")
    return None
  return tuple(texts)


def question_ids(questions_file: epath.PathLike) -> list:
  """Every `question_id` of a questions file, in order: what a results file for it
  must answer, including questions `read_vqa` skips."""
  questions = common.load_json(questions_file).get("questions") or ()
  return [q["question_id"] for q in questions if isinstance(q, dict) and "question_id" in q]


def read_vqa(questions_file: epath.PathLike, annotations_file: epath.PathLike | None,
             image_dir: epath.PathLike, *, image_subtype: str | None = None,
             skips: skips_lib.SkipCounter | None = None
             ) -> Iterator[records.VqaExample]:
  """Yields one `VqaExample` per usable question.

  Args:
    questions_file: the `..._questions.json` file.
    annotations_file: the `..._annotations.json` file, or None for test splits.
    image_dir: the COCO image folder, e.g. `val2014/`.
    image_subtype: the folder part of the image file names; by default taken
      from the questions file's `data_subtype`.
    skips: where malformed entries are counted (a new counter if None).
  """
  skips = common.counter_or_new(skips, "vqa")
  data = common.load_json(questions_file)
  folder = image_subtype or image_folder(data.get("data_subtype", ""))
  annotations = (_annotations_by_id(annotations_file, skips)
                 if annotations_file is not None else None)
  for index, question in enumerate(data.get("questions") or ()):
    example_id = common.entry_id(question, "question_id", questions_file, "questions",
                                 index)
    if not common.require(question, _QUESTION_KEYS, example_id, skips):
      continue
    text = common.checked_text(question["question"], example_id, skips)
    if text is None:
      continue
    path = str(epath.Path(image_dir) / f"COCO_{folder}_{question['image_id']:012d}.jpg")
    example = records.VqaExample(question["question_id"], str(question["image_id"]),
                                 path, text)
    if annotations is not None:
      example = _annotated(example, annotations, skips)
    if example is not None:
      yield example


def _annotated(example: records.VqaExample, annotations: dict[int, dict],
               skips: skips_lib.SkipCounter) -> records.VqaExample | None:
  """The example with its answers, or None if they are missing or malformed."""
  annotation = annotations.get(example.question_id)
  if annotation is None:
    skips.skip(common.MISSING_ANNOTATION, example.question_id,
               "annotated split, but no annotation for this question")
    return None
  answers = _answers(annotation, example.question_id, skips)
  if answers is None:
    return None
  return records.VqaExample(
      example.question_id, example.image_id, example.image_path, example.question,
      answers, str(annotation.get("answer_type", "")),
      str(annotation.get("question_type", "")))
