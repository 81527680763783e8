"""Counting, logging and bounding the examples a pipeline has to skip.

Bad data must never crash a run and must never vanish silently. Every reader,
pipeline and the `check` tool report a skipped example to a `SkipCounter`
together with a short reason; the counter logs it, keeps a few example ids per
reason for the summary, and `check` stops the run with a clear message once the
skipped share of all examples seen passes `max_skip_fraction`.

Only the first `logged_per_reason` skips of a reason get a line each: a web corpus
loses hundreds of thousands of rows to dead urls, and a line per row would bury the
log. After that a reason logs its running count at every power of ten, and every
skip is still counted for the summary and the bound.
"""

from __future__ import annotations

import collections

from absl import logging


class TooManySkipped(RuntimeError):
  """Raised when the skipped share of the data passes the configured bound."""


class SkipCounter:
  """Counts skipped examples per reason and enforces an upper bound on them."""

  def __init__(self, name: str = "data", *, max_skip_fraction: float = 0.01,
               min_seen: int = 100, examples_per_reason: int = 5,
               logged_per_reason: int = 20):
    """Creates an empty counter.

    Args:
      name: what is being read, used in log lines and errors.
      max_skip_fraction: the largest tolerated share of skipped examples.
      min_seen: `check` enforces the bound only after this many examples
        (or when called with `final=True`), because a single early skip would
        otherwise look like a large share.
      examples_per_reason: how many example ids to keep per reason.
      logged_per_reason: how many skips of a reason get a log line each; later
        ones are logged as a running count at 10^k.
    """
    if not 0.0 <= max_skip_fraction <= 1.0:
      raise ValueError(f"max_skip_fraction must be in [0, 1], got {max_skip_fraction}")
    self.name = name
    self.max_skip_fraction = max_skip_fraction
    self.min_seen = min_seen
    self.examples_per_reason = examples_per_reason
    self.logged_per_reason = logged_per_reason
    self._counts: collections.Counter[str] = collections.Counter()
    self._examples: dict[str, list[str]] = collections.defaultdict(list)

  def skip(self, reason: str, example_id: object, detail: str = "") -> None:
    """Records (and logs) one skipped example."""
    self._counts[reason] += 1
    kept = self._examples[reason]
    if len(kept) < self.examples_per_reason:
      kept.append(str(example_id))
    self._log(reason, example_id, detail)

  def _log(self, reason: str, example_id: object, detail: str) -> None:
    count = self._counts[reason]
    if count <= self.logged_per_reason:
      logging.warning("%s: skipping %s (%s)%s", self.name, example_id, reason,
                      f": {detail}" if detail else "")
      if count == self.logged_per_reason:
        logging.warning("%s: further %s skips are counted, not logged one by one",
                        self.name, reason)
    elif _is_power_of_ten(count):
      logging.warning("%s: %d examples skipped so far for %s (latest %s)", self.name,
                      count, reason, example_id)

  @property
  def total(self) -> int:
    """The number of examples skipped so far, over all reasons."""
    return sum(self._counts.values())

  @property
  def counts(self) -> dict[str, int]:
    """Skipped examples per reason, most frequent first."""
    return dict(self._counts.most_common())

  def examples(self, reason: str) -> list[str]:
    """A few ids of examples skipped for `reason`."""
    return list(self._examples.get(reason, ()))

  def merge(self, other: SkipCounter) -> None:
    """Adds another counter's numbers, e.g. from a worker process."""
    self._counts.update(other._counts)
    for reason, ids in other._examples.items():
      room = self.examples_per_reason - len(self._examples[reason])
      self._examples[reason].extend(ids[:max(room, 0)])

  def summary(self, total_seen: int | None = None) -> str:
    """A human-readable multi-line summary of what was skipped and why."""
    head = f"{self.name}: skipped {self.total}"
    if total_seen:
      head += f" of {total_seen} examples ({self.total / total_seen:.2%})"
    lines = [head]
    for reason, count in self._counts.most_common():
      ids = ", ".join(self._examples[reason])
      lines.append(f"  {reason}: {count} (e.g. {ids})")
    return "\n".join(lines)

  def fraction(self, total_seen: int) -> float:
    """The skipped share of `total_seen` examples (skipped ones included)."""
    return self.total / total_seen if total_seen else 0.0

  def check(self, total_seen: int, *, final: bool = False) -> None:
    """Raises `TooManySkipped` if the skipped share passes the bound.

    Args:
      total_seen: how many examples were looked at, skipped ones included.
      final: enforce the bound even below `min_seen` (end of a pass).
    """
    if total_seen < self.total:
      raise ValueError(f"total_seen={total_seen} is below the {self.total} skipped")
    if not final and total_seen < self.min_seen:
      return
    if self.fraction(total_seen) > self.max_skip_fraction:
      raise TooManySkipped(
          f"{self.summary(total_seen)}\nThe skipped share passes the bound "
          f"max_skip_fraction={self.max_skip_fraction:g}; fix the data or raise "
          "the bound.")


def _is_power_of_ten(count: int) -> bool:
  while count % 10 == 0 and count > 1:
    count //= 10
  return count == 1
