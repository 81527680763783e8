"""The VQA answer vocabulary and the soft targets trained against it.

Training and evaluation agree: every vocabulary answer's target for a question is the
accuracy the official scorer (`evaluators/vqa_metric`) would give it as the
prediction. With ten distinct annotators that is min(1, 0.3 n) for the n whose
answers match it, the common practice of UNITER and ViLT, where "match" follows the
official rules: newlines, tabs and outer spaces never count; when the annotators
disagree, punctuation, case, number words, articles and contractions do not count
either; when all ten agree, the answer is matched as written.

The vocabulary holds every training answer given at least `min_count` times, counted
in the form the scorer compares (`vqa_metric.compared_forms`: "2" for a "two" among
disagreeing annotators, "Two" where ten wrote "Two"), most frequent first; it is saved
as JSON next to a checkpoint so predictions map back to strings.
"""

from __future__ import annotations

import collections
import json
from typing import Iterable, Sequence

from etils import epath
import numpy as np

from pixelbert_jax.data import records
from pixelbert_jax.data.readers import common
from pixelbert_jax.metrics import vqa as vqa_metric


def soft_score(count: int) -> float:
  """min(1, 0.3 n), rounded so that 3 annotators give exactly 0.9."""
  return min(1.0, round(0.3 * count, 1))


def _indices_by(forms: Iterable[str]) -> dict[str, tuple[int, ...]]:
  by_form = collections.defaultdict(list)
  for index, form in enumerate(forms):
    by_form[form].append(index)
  return {form: tuple(indices) for form, indices in by_form.items()}


class AnswerVocab:
  """A fixed list of answers with an index for each."""

  def __init__(self, answers: Sequence[str]):
    self.answers = tuple(answers)
    self.index = {answer: i for i, answer in enumerate(self.answers)}
    if len(self.index) != len(self.answers):
      raise ValueError("answer vocabulary has duplicates")
    # The entries a prediction-form can be, for each way the scorer compares.
    self._by_form = {
        False: _indices_by(map(vqa_metric.clean_whitespace, self.answers)),
        True: _indices_by(map(vqa_metric.normalize_answer, self.answers))}

  def __len__(self) -> int:
    return len(self.answers)

  def __contains__(self, answer: str) -> bool:
    return answer in self.index

  def sparse_targets(self, answers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(indices int32, scores float32) of the vocabulary answers that score on `answers`.

    Each entry scores exactly what the official evaluation would give it as the
    prediction. Only entries whose compared form equals an answer's can score, so
    those are the only ones scored. An empty pair means the target is all zeros.
    """
    forms, processed = vqa_metric.compared_forms(list(answers))
    by_form = self._by_form[processed]
    candidates = sorted({i for form in set(forms) for i in by_form.get(form, ())})
    scores = [vqa_metric.accuracy_against_forms(
        vqa_metric.prediction_form(self.answers[i], processed), forms)
              for i in candidates]
    kept = [(i, s) for i, s in zip(candidates, scores) if s > 0]
    return (np.array([i for i, _ in kept], np.int32),
            np.array([s for _, s in kept], np.float32))

  def dense_targets(self, answers: Iterable[str]) -> np.ndarray:
    """A float32 vector of length len(self) holding the soft scores."""
    target = np.zeros(len(self), np.float32)
    indices, scores = self.sparse_targets(answers)
    target[indices] = scores
    return target

  def save(self, path: epath.PathLike) -> None:
    """Writes the vocabulary as JSON (a list of answers, index = position)."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"answers": list(self.answers)}, ensure_ascii=False))

  @classmethod
  def load(cls, path: epath.PathLike) -> AnswerVocab:
    """The vocabulary `save` wrote; a damaged file raises `DataFileError` naming it."""
    answers = common.load_json(path).get("answers")
    if not isinstance(answers, list):
      raise common.DataFileError(f"{path}: no `answers` list")
    return cls(answers)


def count_answers(examples: Iterable[records.VqaExample]) -> collections.Counter:
  """How often each answer was given, over all annotator answers, each in the form
  the official scorer compares for its question."""
  counts = collections.Counter()
  for example in examples:
    counts.update(vqa_metric.compared_forms(list(example.answers))[0])
  return counts


def build_answer_vocab(examples: Iterable[records.VqaExample], *,
                       min_count: int = 9) -> AnswerVocab:
  """The answers given at least `min_count` times, most frequent first.

  Ties are broken alphabetically so the vocabulary is the same on every run.
  """
  counts = count_answers(examples)
  kept = [a for a, n in counts.items() if n >= min_count and a]
  return AnswerVocab(sorted(kept, key=lambda a: (-counts[a], a)))
