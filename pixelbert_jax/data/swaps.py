"""Hard ITM negatives: the caption with one word swapped for another of its group.

Random captions of other images differ from the true one in nearly every word, so
image-text matching can be solved by comparing bags of words with bags of colours.
A caption whose one colour (or shape) word is replaced by another colour (or shape)
differs in one attribute of one object: to reject it the model must find the object
the word names in the pixels. This is the "swap" family of hard negative captions of
NegCLIP (Yuksekgonul et al., 2023); the paper's Pixel-BERT uses random negatives only,
so the swaps are off unless a config names word groups.

Swapping works on token ids, so every word of a group must be one vocabulary token.
A caption with no word of any group has no swap; the trainer then keeps its ordinary
negative. A swap can, rarely, describe another object of the same image (a red and a
blue circle, "red" swapped for "blue"): that label noise is accepted, as in NegCLIP.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from pixelbert_jax.data import tokenizer as tokenizer_lib


def single_token_ids(tokenizer: tokenizer_lib.Tokenizer, words: Sequence[str],
                     what: str) -> list[int]:
  """The id of each word; a word that is not one regular vocabulary token is an error."""
  if isinstance(words, str):
    raise ValueError(f"{what} must be a list of words, not the string {words!r}")
  ids = []
  for word in words:
    pieces = tokenizer.text_to_ids(word)
    if len(pieces) != 1 or pieces[0] in tokenizer.special_ids:
      raise ValueError(f"{what}: {word!r} is not one token of the vocabulary")
    ids.extend(pieces)
  return ids


@dataclasses.dataclass(frozen=True)
class WordSwapper:
  """Replaces one token of a caption by another token of the same group."""
  groups: tuple[tuple[int, ...], ...]

  @classmethod
  def from_words(cls, tokenizer: tokenizer_lib.Tokenizer,
                 groups: Sequence[Sequence[str]]) -> "WordSwapper":
    ids = tuple(tuple(single_token_ids(tokenizer, group, "itm_swap_words"))
                for group in groups)
    small = [list(group) for group in groups if len(group) < 2]
    if small:
      raise ValueError(f"itm_swap_words: every group needs two words or more, got {small}")
    return cls(ids)

  def __call__(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(the swapped copy of `ids`, True), or (`ids` unchanged, False) without a
    swappable word. The position is drawn uniformly among the swappable ones."""
    group_of = {token: group for group in self.groups for token in group}
    positions = [i for i, token in enumerate(ids.tolist()) if token in group_of]
    if not positions:
      return ids.copy(), False
    position = positions[rng.integers(len(positions))]
    old = int(ids[position])
    others = [token for token in group_of[old] if token != old]
    swapped = ids.copy()
    swapped[position] = others[rng.integers(len(others))]
    return swapped, True
