"""Tests for pixelbert_jax.data.masking: BERT's 15 % and 80/10/10, seeded."""

import numpy as np
import pytest

from pixelbert_jax.data import masking
from pixelbert_jax.data import tokenizer

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = frozenset((PAD, UNK, CLS, SEP, MASK))
VOCAB_SIZE = 50


def _row(num_real: int, max_len: int, rng: np.random.Generator) -> np.ndarray:
  """[CLS] real tokens [SEP] [PAD]..., with an [UNK] in the middle when there is room."""
  real = rng.integers(5, VOCAB_SIZE, size=num_real)
  if num_real > 2:
    real[num_real // 2] = UNK
  row = np.full((max_len,), PAD, np.int32)
  row[:num_real + 2] = [CLS, *real, SEP]
  return row


def _mask(ids, rng, **kwargs):
  return masking.mask_tokens(ids, rng, mask_id=MASK, vocab_size=VOCAB_SIZE,
                             special_ids=SPECIAL, **kwargs)


def test_statistics_over_many_draws():
  rng = np.random.default_rng(0)
  ids = np.stack([_row(21, 31, rng) for _ in range(4000)])  # 20 real tokens a row
  masked, labels, weights = _mask(ids, rng)
  chosen = weights == 1.0
  real = ~np.isin(ids, list(SPECIAL))
  assert chosen.sum(axis=1).tolist() == [3] * len(ids)  # round(0.15 × 20)
  assert not (chosen & ~real).any()
  to_mask = chosen & (masked == MASK)
  unchanged = chosen & (masked == ids)
  replaced = chosen & ~to_mask & ~unchanged
  total = chosen.sum()
  # 12000 draws: the binomial standard deviation of a share is below 0.4 %.
  assert abs(to_mask.sum() / total - 0.8) < 0.015
  # A random replacement equals the original 1 time in 45, so "unchanged" gains that.
  assert abs(unchanged.sum() / total - (0.1 + 0.1 / 45)) < 0.015
  assert abs(replaced.sum() / total - (0.1 - 0.1 / 45)) < 0.015
  np.testing.assert_array_equal(labels[chosen], ids[chosen])
  assert not labels[~chosen].any() and not weights[~chosen].any()
  assert labels.dtype == np.int32 and weights.dtype == np.float32


def test_mask_rate_across_lengths():
  rng = np.random.default_rng(1)
  real_total = chosen_total = 0
  for _ in range(3000):
    num_real = int(rng.integers(1, 40))
    ids = _row(num_real, 48, rng)
    _, _, weights = _mask(ids, rng)
    real = (~np.isin(ids, list(SPECIAL))).sum()
    assert weights.sum() == max(1, round(real * 0.15))
    real_total += real
    chosen_total += weights.sum()
  assert abs(chosen_total / real_total - 0.15) < 0.01


def test_never_touches_specials_or_padding():
  rng = np.random.default_rng(2)
  for _ in range(2000):
    ids = _row(int(rng.integers(0, 12)), 16, rng)
    masked, _, weights = _mask(ids, rng)
    special_positions = np.isin(ids, list(SPECIAL))
    np.testing.assert_array_equal(masked[special_positions], ids[special_positions])
    assert not weights[special_positions].any()
    # Random replacements come from the regular vocabulary only.
    replaced = (masked != ids) & (masked != MASK)
    assert not np.isin(masked[replaced], list(SPECIAL)).any()
    assert (masked < VOCAB_SIZE).all()


def test_random_replacements_cover_the_regular_vocabulary_uniformly():
  rng = np.random.default_rng(3)
  ids = np.stack([_row(20, 22, rng) for _ in range(3000)])
  masked, _, _ = _mask(ids, rng, mask_token_share=0.0, random_token_share=1.0)
  drawn = masked[(masked != ids)]
  counts = np.bincount(drawn, minlength=VOCAB_SIZE)
  assert not counts[list(SPECIAL)].any()
  regular = counts[5:]
  assert regular.min() > 0.7 * regular.mean() and regular.max() < 1.3 * regular.mean()


def test_at_least_one_and_none_without_real_tokens():
  rng = np.random.default_rng(4)
  one_real = np.array([CLS, 17, SEP, PAD], np.int32)
  masked, labels, weights = _mask(one_real, rng)
  assert weights.tolist() == [0, 1, 0, 0] and labels[1] == 17
  nothing_real = np.array([CLS, SEP, PAD, PAD], np.int32)
  masked, labels, weights = _mask(nothing_real, rng)
  np.testing.assert_array_equal(masked, nothing_real)
  assert not weights.any() and not labels.any()


def test_max_predictions_caps_the_count():
  rng = np.random.default_rng(5)
  _, _, weights = _mask(_row(60, 64, rng), rng, max_predictions=4)
  assert weights.sum() == 4


def test_deterministic_by_seed():
  ids = np.stack([_row(25, 32, np.random.default_rng(i)) for i in range(8)])
  first = _mask(ids, np.random.default_rng(42))
  again = _mask(ids, np.random.default_rng(42))
  other = _mask(ids, np.random.default_rng(43))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first[2], other[2])


def test_masker_from_tokenizer_matches_the_function(tmp_path):
  # A real WordPiece vocabulary with the same layout as the ids above.
  words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
      f"word{i}" for i in range(5, VOCAB_SIZE)]
  (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
  vocab = tokenizer.WordPieceTokenizer.from_vocab_file(tmp_path / "vocab.txt")
  masker = masking.MlmMasker.from_tokenizer(vocab)
  ids, _ = vocab.encode(" ".join(words[5:35]), 40)
  expected = _mask(ids, np.random.default_rng(7))
  for a, b in zip(masker(ids, np.random.default_rng(7)), expected):
    np.testing.assert_array_equal(a, b)


def test_rejects_three_dimensional_ids():
  with pytest.raises(ValueError):
    _mask(np.zeros((2, 2, 2), np.int32), np.random.default_rng(0))


def test_focus_words_fill_their_share_of_the_masked_positions_first():
  ids = np.arange(10, 30)  # 20 real tokens: 3 chosen at 15 %
  focus = {12, 17}
  rng = np.random.default_rng(0)
  for _ in range(50):
    _, labels, weights = masking.mask_tokens(
        ids, rng, mask_id=1, vocab_size=40, special_ids={0, 1, 2, 3}, focus_ids=focus,
        focus_share=0.67)
    chosen = set(ids[weights > 0].tolist())
    assert len(chosen) == 3 and focus <= chosen  # round(0.67 x 3) = 2 focus words
  _, _, weights = masking.mask_tokens(ids, rng, mask_id=1, vocab_size=40,
                                      special_ids={0, 1, 2, 3}, focus_ids={12},
                                      focus_share=1.0)
  assert 12 in ids[weights > 0] and weights.sum() == 3  # fewer focus words than slots
  # One masked token (a short caption): the share is met on average, not rounded away.
  short = np.arange(10, 16)
  hits = [12 in short[masking.mask_tokens(
      short, rng, mask_id=1, vocab_size=40, special_ids={0, 1, 2, 3}, focus_ids={12},
      focus_share=0.5)[2] > 0] for _ in range(400)]
  assert 0.45 < np.mean(hits) < 0.65  # 0.5 + 0.5 x 1/6 by chance
