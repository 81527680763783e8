"""NLVR2 evaluation over a whole split: predictions, accuracy and consistency, CSV file.

Every example read is predicted exactly once: the evaluation pipeline pads its last
batch (`valid` False) instead of dropping examples, the per-example outputs are
gathered onto every process (`gather`), and each example is found again by its
position in the list of examples, which every process holds. The file covers every
identifier of the split's files: an example the reader skipped (its images missing,
say) or whose images could not be loaded is predicted "False" and counted as
unpredicted.

The file is the one the official `metrics.py` (and the NLVR2 team, for the hidden
test set) reads: `WORKDIR/nlvr2_predictions_step{N}.csv`, "identifier,True|False" per
line, written by process 0. Where the split has labels, accuracy and consistency (in
percent) come from `nlvr2_metric.score` over the labelled examples.
"""

from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
from absl import logging

from pixelbert_jax.data import records
from pixelbert_jax.evaluators import context as context_lib
from pixelbert_jax.evaluators import gather
from pixelbert_jax.metrics import nlvr2 as nlvr2_metric


class Nlvr2Evaluator:
  """Predicts every example of a split, writes the official CSV, scores it."""

  def __init__(self, predict: Callable, context: context_lib.EvalContext, *,
               make_iterator: Callable[[], Iterator],
               examples: Sequence[records.Nlvr2Example],
               identifiers: Sequence[str] | None = None):
    """`predict(state, batch) -> {"prediction", "loss"}` per example (jitted);
    `identifiers`: every example the file must cover, in order (default: the
    examples')."""
    self.predict_fn = predict
    self.context = context
    self.make_iterator = make_iterator
    self.examples = list(examples)
    self.labels = {e.identifier: e.label for e in self.examples if e.label is not None}
    self.identifiers = gather.ids_to_cover(
        identifiers, [e.identifier for e in self.examples], "identifiers")

  def predict(self, state) -> dict[int, tuple[bool, float]]:
    """{position in the split: (prediction, per-example loss)} over the whole split."""
    found = gather.per_example(self.make_iterator, self.predict_fn,
                               self.context.to_global, state, "prediction")
    return {index: (bool(output), loss) for index, (output, loss) in found.items()}

  def file_predictions(self, predicted: dict) -> dict[str, bool]:
    """identifier -> prediction over `identifiers`, in order; "False" for an example
    not predicted."""
    found = {self.examples[i].identifier: value for i, (value, _) in predicted.items()}
    return {identifier: found.get(identifier, False) for identifier in self.identifiers}

  def write(self, predictions: dict[str, bool], step: int):
    return self.context.write(f"nlvr2_predictions_step{step}.csv", lambda path:
                              nlvr2_metric.write_predictions(str(path), predictions))

  def run(self, state) -> Iterator[tuple[str, float]]:
    step = int(jax.device_get(state.step))
    predicted = self.predict(state)
    predictions = self.file_predictions(predicted)
    path = self.write(predictions, step)
    logging.info("NLVR2: predicted %d of %d examples; wrote %s", len(predicted),
                 len(predictions), path)
    yield "num_examples", float(len(predictions))
    yield "num_unpredicted", float(len(predictions) - len(predicted))
    if not self.labels:
      return
    losses = [loss for i, (_, loss) in predicted.items()
              if self.examples[i].label is not None]
    yield "loss", float(np.mean(losses or [0.0]))
    scores = nlvr2_metric.score({k: predictions[k] for k in self.labels}, self.labels)
    yield "accuracy", scores["accuracy"]
    yield "consistency", scores["consistency"]
