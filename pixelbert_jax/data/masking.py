"""BERT masked-language-model masking in numpy, driven by an explicit random Generator.

Taking the `np.random.Generator` as an argument (never the global numpy state) keeps a
grain map op deterministic by seed: the same record and seed give the same masks, in any
worker and after any restart.

The recipe is BERT's (create_pretraining_data.py): among the real tokens, exactly
round(15 %) are chosen (at least one when there is any), and of those 80 % become
[MASK], 10 % a random non-special token and 10 % stay unchanged; the model must predict
the original token at every chosen position.
"""

from collections.abc import Iterable
import dataclasses

import numpy as np


def mask_tokens(ids: np.ndarray, rng: np.random.Generator, *, mask_id: int,
                vocab_size: int, special_ids: Iterable[int], mask_rate: float = 0.15,
                mask_token_share: float = 0.8, random_token_share: float = 0.1,
                max_predictions: int | None = None, focus_ids: Iterable[int] = (),
                focus_share: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Masks a (L,) or (B, L) array of token ids, row by row.

  Args:
    ids: token ids; positions holding any of `special_ids` ([CLS], [SEP], [PAD],
      [MASK], [UNK]: what `Tokenizer.special_ids` returns) are never chosen.
    rng: the source of randomness.
    mask_id: the [MASK] id.
    vocab_size: random replacements are drawn uniformly from [0, vocab_size) minus
      `special_ids`.
    special_ids: ids that are not real tokens.
    mask_rate: share of real tokens chosen per row (rounded; at least one).
    mask_token_share: share of chosen tokens replaced by [MASK].
    random_token_share: share of chosen tokens replaced by a random token; the rest
      stay unchanged.
    max_predictions: if set, at most this many tokens are chosen per row.
    focus_ids: token ids to prefer (off by default: BERT's uniform choice).
    focus_share: share of the chosen positions drawn first from tokens holding
      `focus_ids` (as many as there are); the rest are drawn uniformly as usual.

  Returns:
    masked_ids: ids after replacement, same shape and dtype as `ids`.
    mlm_labels: int32, the original id at chosen positions, 0 elsewhere.
    mlm_weights: float32, 1.0 at chosen positions, 0.0 elsewhere.
  """
  ids = np.asarray(ids)
  if ids.ndim == 2:
    rows = [mask_tokens(row, rng, mask_id=mask_id, vocab_size=vocab_size,
                        special_ids=special_ids, mask_rate=mask_rate,
                        mask_token_share=mask_token_share,
                        random_token_share=random_token_share,
                        max_predictions=max_predictions, focus_ids=focus_ids,
                        focus_share=focus_share) for row in ids]
    return tuple(np.stack(parts) for parts in zip(*rows))
  if ids.ndim != 1:
    raise ValueError(f"expected (L,) or (B, L) ids, got shape {ids.shape}")
  special = np.asarray(sorted(set(special_ids)), dtype=np.int64)
  chosen = _choose_positions(ids, rng, special, mask_rate, max_predictions,
                             np.asarray(sorted(set(focus_ids)), np.int64), focus_share)
  masked_ids = ids.copy()
  action = rng.random(len(chosen))
  to_mask = chosen[action < mask_token_share]
  to_random = chosen[(action >= mask_token_share)
                     & (action < mask_token_share + random_token_share)]
  masked_ids[to_mask] = mask_id
  masked_ids[to_random] = _random_regular_ids(rng, len(to_random), vocab_size, special)
  labels = np.zeros(ids.shape, dtype=np.int32)
  labels[chosen] = ids[chosen]
  weights = np.zeros(ids.shape, dtype=np.float32)
  weights[chosen] = 1.0
  return masked_ids, labels, weights


def _choose_positions(ids: np.ndarray, rng: np.random.Generator, special: np.ndarray,
                      mask_rate: float, max_predictions: int | None,
                      focus: np.ndarray, focus_share: float) -> np.ndarray:
  """Sorted positions of round(mask_rate × #real) real tokens (≥ 1 if any is real).

  focus_share × that many (rounded at random) are drawn first from the positions
  holding `focus` ids.
  """
  real_positions = np.flatnonzero(~_holds_any(ids, special))
  if real_positions.size == 0:
    return real_positions
  count = max(1, round(real_positions.size * mask_rate))
  if max_predictions is not None:
    count = min(count, max_predictions)
  focus_positions = real_positions[_holds_any(ids[real_positions], focus)]
  if focus_positions.size == 0 or focus_share <= 0:
    # BERT's uniform choice, drawing exactly as it always has.
    return np.sort(rng.choice(real_positions, size=count, replace=False))
  # Rounded at random, so that short captions (one masked token) get the share too.
  expected = count * focus_share
  num_focus = min(focus_positions.size,
                  int(expected) + int(rng.random() < expected - int(expected)))
  first = rng.choice(focus_positions, size=num_focus, replace=False)
  rest = np.setdiff1d(real_positions, first)
  return np.sort(np.concatenate(
      [first, rng.choice(rest, size=count - num_focus, replace=False)]))


def _holds_any(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
  """`np.isin(ids, values)` for a caption and a handful of ids, without its set-up cost
  (which dominates on 40-token captions)."""
  return (ids[:, None] == values[None, :]).any(axis=1)


def _random_regular_ids(rng: np.random.Generator, count: int, vocab_size: int,
                        special: np.ndarray) -> np.ndarray:
  """`count` ids drawn uniformly from [0, vocab_size) without the special ids."""
  special = special[(special >= 0) & (special < vocab_size)]
  draws = rng.integers(0, vocab_size - special.size, size=count)
  # Walking the sorted special ids upwards and stepping over each one maps
  # [0, vocab_size - #special) onto the regular ids one-to-one, with no rejection loop.
  for special_id in special:
    draws += draws >= special_id
  return draws


@dataclasses.dataclass(frozen=True)
class MlmMasker:
  """`mask_tokens` with a tokenizer's ids bound, ready to use inside a grain map op."""

  mask_id: int
  vocab_size: int
  special_ids: frozenset[int]
  mask_rate: float = 0.15
  max_predictions: int | None = None
  focus_ids: frozenset[int] = frozenset()
  focus_share: float = 0.0

  @classmethod
  def from_tokenizer(cls, tokenizer, **kwargs) -> "MlmMasker":
    """Takes `mask_id`, `vocab_size` and `special_ids` from a `Tokenizer`."""
    return cls(mask_id=tokenizer.mask_id, vocab_size=tokenizer.vocab_size,
               special_ids=frozenset(tokenizer.special_ids), **kwargs)

  def __call__(self, ids: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return mask_tokens(ids, rng, mask_id=self.mask_id, vocab_size=self.vocab_size,
                       special_ids=self.special_ids, mask_rate=self.mask_rate,
                       max_predictions=self.max_predictions, focus_ids=self.focus_ids,
                       focus_share=self.focus_share)
