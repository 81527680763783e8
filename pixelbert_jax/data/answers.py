"""The VQA answer vocabulary and the soft targets trained against it.

The vocabulary holds every training answer given at least
`min_count` times, most frequent first; it is saved as JSON next to a
checkpoint so predictions map back to strings. A question's target scores each
vocabulary answer given by n of its annotators as min(1, 0.3 n): 0, 0.3, 0.6,
0.9 or 1.0, the common practice of UNITER and ViLT.
"""

from __future__ import annotations

import collections
import json
from typing import Iterable, Sequence

from etils import epath
import numpy as np

from pixelbert_jax.data import records
from pixelbert_jax.evaluators import vqa_metric


def normalize_answer(answer: str) -> str:
  """The official evaluation's processing of a predicted answer.

  The vocabulary's entries are what the model predicts, and the official scorer
  normalises every prediction this way; an entry kept in another form ("t-shirt",
  "two") would be rewritten at scoring time and miss its own annotators.
  """
  return vqa_metric.normalize_answer_official(answer)


def soft_score(count: int) -> float:
  """min(1, 0.3 n), rounded so that 3 annotators give exactly 0.9."""
  return min(1.0, round(0.3 * count, 1))


class AnswerVocab:
  """A fixed list of answers with an index for each."""

  def __init__(self, answers: Sequence[str]):
    self.answers = tuple(answers)
    self.index = {answer: i for i, answer in enumerate(self.answers)}
    if len(self.index) != len(self.answers):
      raise ValueError("answer vocabulary has duplicates")

  def __len__(self) -> int:
    return len(self.answers)

  def __contains__(self, answer: str) -> bool:
    return normalize_answer(answer) in self.index

  def sparse_targets(self, answers: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """(indices int32, scores float32) of the vocabulary answers among `answers`.

    Each candidate scores what the official evaluation would give it as the
    prediction (with ten annotators: min(1, 0.3 n) for n who agree), so training
    targets and the benchmark's scoring treat answer spellings alike. Answers outside
    the vocabulary score nothing; an empty pair means the target is all zeros.
    """
    answers = list(answers)
    candidates = {normalize_answer(a) for a in answers} & self.index.keys()
    scored = sorted((self.index[c], vqa_metric.question_accuracy(c, answers))
                    for c in candidates)
    scored = [(i, s) for i, s in scored if s > 0]
    indices = np.array([i for i, _ in scored], np.int32)
    return indices, np.array([s for _, s in scored], np.float32)

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
    return cls(json.loads(epath.Path(path).read_text())["answers"])


def count_answers(examples: Iterable[records.VqaExample]) -> collections.Counter:
  """How often each normalised answer was given, over all annotator answers."""
  counts = collections.Counter()
  for example in examples:
    counts.update(normalize_answer(a) for a in example.answers)
  return counts


def build_answer_vocab(examples: Iterable[records.VqaExample], *,
                       min_count: int = 9) -> AnswerVocab:
  """The answers given at least `min_count` times, most frequent first.

  Ties are broken alphabetically so the vocabulary is the same on every run.
  """
  counts = count_answers(examples)
  kept = [a for a, n in counts.items() if n >= min_count and a]
  return AnswerVocab(sorted(kept, key=lambda a: (-counts[a], a)))
