"""VQA evaluation over a whole split: answers, official accuracy, EvalAI submission file.

Every question read is answered exactly once: the evaluation pipeline pads its last
batches (`valid` False) instead of dropping examples, the per-example outputs are
gathered onto every process (`gather`), and each question is found again by its
`example_index` (its position in the list of examples, which every process holds).

The file, `WORKDIR/vqa_predictions_step{N}.json` (`[{"question_id": int, "answer":
str}]`), answers every question id it is asked to cover, in that order: the questions
files' ids, including questions the reader skipped and questions whose image could not
be loaded (those get the vocabulary's most frequent answer and count as unanswered).
For an EvalAI test-dev submission that must be the whole test-std questions file
(`v2_OpenEnded_mscoco_test2015_questions.json`), so the VQA task adds its questions to
the evaluation when `config.data.submission_questions` names it.

The annotated questions are scored with the official VQA accuracy (`metrics.vqa`:
overall and per answer type, in percent); the others are only predicted.
"""

import json
import re
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
from absl import logging

from pixelbert_jax.data import answers as answers_lib
from pixelbert_jax.data import records
from pixelbert_jax.evaluators import context as context_lib
from pixelbert_jax.evaluators import gather
from pixelbert_jax.metrics import vqa as vqa_metric


def official_structures(examples: Sequence[records.VqaExample]) -> tuple[dict, dict]:
  """The loaded questions and annotations files of the annotated examples, rebuilt.

  Answers get the official files' distinct `answer_id`s, so that the scorer leaves
  annotators out one at a time as it does on those files.
  """
  examples = [e for e in examples if e.answers]
  questions = [{"question_id": e.question_id, "image_id": e.image_id} for e in examples]
  annotations = [{"question_id": e.question_id, "image_id": e.image_id,
                  "answer_type": e.answer_type, "question_type": e.question_type,
                  "answers": [{"answer": a, "answer_id": i + 1}
                              for i, a in enumerate(e.answers)]} for e in examples]
  return {"questions": questions}, {"annotations": annotations}


def metric_name(answer_type: str) -> str:
  """"yes/no" -> "accuracy_yes_no": a name that metric writers take as one tag."""
  return "accuracy_" + re.sub(r"[^0-9a-zA-Z]+", "_", answer_type).strip("_")


class VqaEvaluator:
  """Answers every question of a split, writes the submission file, scores it."""

  def __init__(self, predict: Callable, context: context_lib.EvalContext, *,
               make_iterator: Callable[[], Iterator],
               examples: Sequence[records.VqaExample], vocab: answers_lib.AnswerVocab,
               question_ids: Sequence[int] | None = None):
    """`predict(state, batch) -> {"answer_index", "loss"}` per example (jitted);
    `question_ids`: every id the file must answer, in order (default: the examples')."""
    self.predict_fn = predict
    self.context = context
    self.make_iterator = make_iterator
    self.examples = list(examples)
    self.vocab = vocab
    self.question_ids = gather.ids_to_cover(
        question_ids, [e.question_id for e in self.examples], "question ids")
    self.official = official_structures(self.examples)
    self.annotated = bool(self.official[1]["annotations"])

  def predict(self, state) -> dict[int, tuple[int, float]]:
    """{position in the split: (answer index, per-example loss)} over the whole split."""
    # question_id is int64: it stays on the host.
    found = gather.per_example(self.make_iterator, self.predict_fn,
                               self.context.to_global, state, "answer_index",
                               host_only=("question_id",))
    return {index: (int(output), loss) for index, (output, loss) in found.items()}

  def results(self, predicted: dict) -> list[dict]:
    """The EvalAI results list over `question_ids`, in order; a question unanswered
    (not read, or its image not loaded) gets the vocabulary's most frequent answer."""
    answers = {example.question_id: self.vocab.answers[predicted[i][0]]
               for i, example in enumerate(self.examples) if i in predicted}
    fallback = self.vocab.answers[0]
    return [{"question_id": int(question_id), "answer": answers.get(question_id, fallback)}
            for question_id in self.question_ids]

  def write(self, results: list[dict], step: int):
    return self.context.write(f"vqa_predictions_step{step}.json",
                              lambda path: path.write_text(json.dumps(results)))

  def run(self, state) -> Iterator[tuple[str, float]]:
    step = int(jax.device_get(state.step))
    predicted = self.predict(state)
    results = self.results(predicted)
    path = self.write(results, step)
    logging.info("VQA: answered %d of %d questions; wrote %s", len(predicted),
                 len(results), path)
    yield "num_questions", float(len(results))
    yield "num_unanswered", float(len(results) - len(predicted))
    if not self.annotated:
      return
    yield "loss", float(np.mean([loss for i, (_, loss) in predicted.items()
                                 if self.examples[i].answers] or [0.0]))
    scored_ids = {a["question_id"] for a in self.official[1]["annotations"]}
    scores = vqa_metric.score(*self.official,
                              [r for r in results if r["question_id"] in scored_ids])
    yield "accuracy", scores["overall"]
    for answer_type, accuracy in sorted(scores["perAnswerType"].items()):
      yield metric_name(answer_type), accuracy
