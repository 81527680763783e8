"""Text tokenisers: BERT WordPiece (via `tokenizers`) and SentencePiece, one interface.

Both produce what the model reads: `[CLS] tokens [SEP]`, truncated and padded to a fixed
length, as int32 ids with a 0/1 mask. The special ids (`pad_id`, `cls_id`, `sep_id`,
`mask_id`, `unk_id`) are what MLM masking and the model heads need.

Choose one from a config string with `from_config`:

    "wordpiece:/path/vocab.txt"         BERT uncased (lowercase, strip accents)
    "wordpiece_cased:/path/vocab.txt"   BERT cased
    "sentencepiece:/path/spm.model"

Paths may be local or `gs://`. `train_wordpiece` and `train_sentencepiece` build a
vocabulary from a user's own corpus in the formats these classes load.

Both classes pickle (by their vocabulary or model bytes), so grain can ship them to
worker processes.
"""

from collections.abc import Iterable, Iterator, Sequence
import os
import tempfile

from etils import epath
import numpy as np
import sentencepiece as spm
import tokenizers
from tokenizers import decoders
from tokenizers import models
from tokenizers import normalizers
from tokenizers import pre_tokenizers

from pixelbert_jax.data.readers import common

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
BERT_SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)

# SentencePiece models spell their special pieces differently; the first piece that a
# model really contains is used (ALBERT: [CLS]/[SEP]/[MASK]; T5-like: <s>, </s>, <pad>).
_SENTENCEPIECE_CANDIDATES = {
    "cls": (CLS, "<cls>", "<s>"),
    "sep": (SEP, "<sep>", "</s>"),
    "mask": (MASK, "<mask>"),
    "pad": (PAD, "<pad>"),
}

Corpus = str | os.PathLike | Sequence[str | os.PathLike] | Iterable[str]


class Tokenizer:
  """The interface: subclasses set the special ids and implement the two conversions."""

  pad_id: int
  cls_id: int
  sep_id: int
  mask_id: int
  unk_id: int

  @property
  def vocab_size(self) -> int:
    raise NotImplementedError

  def text_to_ids(self, text: str) -> list[int]:
    """The ids of `text`, without [CLS], [SEP], truncation or padding."""
    raise NotImplementedError

  def ids_to_text(self, ids: Sequence[int]) -> str:
    """Text for ids that contain no special tokens."""
    raise NotImplementedError

  @property
  def special_ids(self) -> frozenset[int]:
    """Ids that MLM must neither choose nor draw as random replacements."""
    return frozenset((self.pad_id, self.cls_id, self.sep_id, self.mask_id, self.unk_id))

  def encode(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """`[CLS] text [SEP]`, truncated to `max_len` tokens and padded with `pad_id`.

    Returns:
      ids: int32 (max_len,).
      mask: int32 (max_len,), 1 for [CLS], the text and [SEP], 0 for padding.
    """
    if max_len < 2:
      raise ValueError(f"max_len must leave room for [CLS] and [SEP], got {max_len}")
    body = self.text_to_ids(text)[:max_len - 2]
    ids = np.full((max_len,), self.pad_id, dtype=np.int32)
    ids[:len(body) + 2] = [self.cls_id, *body, self.sep_id]
    mask = np.zeros((max_len,), dtype=np.int32)
    mask[:len(body) + 2] = 1
    return ids, mask

  def decode(self, ids: Sequence[int] | np.ndarray) -> str:
    """Text for ids, skipping every special token (padding included)."""
    special = self.special_ids - {self.unk_id}
    return self.ids_to_text([int(i) for i in ids if int(i) not in special])


class WordPieceTokenizer(Tokenizer):
  """BERT's WordPiece, identical to Hugging Face's BertTokenizer on the same vocab.txt.

  Built from `tokenizers` parts: BertNormalizer (clean text, spaces around CJK
  characters, lowercase and accent stripping when uncased), BertPreTokenizer
  (whitespace and punctuation) and the WordPiece model with `##` continuations. The
  special tokens are registered as such, so a literal "[MASK]" in the text becomes the
  mask id, as it does in BertTokenizer.
  """

  def __init__(self, vocab: dict[str, int], *, lowercase: bool = True):
    missing = [t for t in BERT_SPECIAL_TOKENS if t not in vocab]
    if missing:
      raise ValueError(f"vocabulary lacks the special tokens {missing}")
    self._vocab = dict(vocab)
    self._lowercase = lowercase
    self._tokenizer = _bert_wordpiece(self._vocab, lowercase)
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
        vocab[t] for t in BERT_SPECIAL_TOKENS)

  @classmethod
  def from_vocab_file(cls, path: str | os.PathLike, lowercase: bool = True
                      ) -> "WordPieceTokenizer":
    """Loads a BERT vocab.txt (one token a line; the line number is the id)."""
    data = epath.Path(path).read_bytes()
    try:
      lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
      line = data[:error.start].count(b"\n") + 1
      raise common.DataFileError(f"{path}:{line}: not UTF-8 text ({error.reason}); "
                                 "is it a vocab.txt?") from error
    # BERT's loader keeps the first id of a repeated token; so do we.
    vocab = {}
    for index, token in enumerate(lines):
      vocab.setdefault(token.rstrip("\n"), index)
    return cls(vocab, lowercase=lowercase)

  @property
  def vocab_size(self) -> int:
    return max(self._vocab.values()) + 1

  def text_to_ids(self, text: str) -> list[int]:
    return self._tokenizer.encode(text, add_special_tokens=False).ids

  def ids_to_text(self, ids: Sequence[int]) -> str:
    return self._tokenizer.decode(list(ids), skip_special_tokens=False)

  def __getstate__(self):
    return {"vocab": self._vocab, "lowercase": self._lowercase}

  def __setstate__(self, state):
    self.__init__(state["vocab"], lowercase=state["lowercase"])


def _bert_wordpiece(vocab: dict[str, int], lowercase: bool) -> tokenizers.Tokenizer:
  """A `tokenizers.Tokenizer` configured exactly like BertTokenizer(Fast)."""
  tokenizer = tokenizers.Tokenizer(models.WordPiece(
      vocab, unk_token=UNK, continuing_subword_prefix="##",
      max_input_chars_per_word=100))
  # strip_accents=None follows `lowercase`, BERT's own rule (uncased strips accents).
  tokenizer.normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=True, strip_accents=None,
      lowercase=lowercase)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
  tokenizer.add_special_tokens(list(BERT_SPECIAL_TOKENS))
  return tokenizer


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model, used without BOS/EOS: we add [CLS] and [SEP] ourselves.

  The special ids are found by piece: [CLS]/<cls>/<s>, [SEP]/<sep>/</s>,
  [MASK]/<mask> and [PAD]/<pad> (the model's own pad id first), so models trained by
  `train_sentencepiece` (user-defined [CLS], [SEP], [MASK]), ALBERT's and T5-style ones
  all load. A model with no mask or pad piece is refused: retrain it with
  `train_sentencepiece`, which reserves them.
  """

  def __init__(self, model_proto: bytes):
    self._model_proto = model_proto
    self._processor = spm.SentencePieceProcessor(model_proto=model_proto)
    self.unk_id = self._processor.unk_id()
    own_pad = self._processor.pad_id()
    self.pad_id = own_pad if own_pad >= 0 else self._find_piece("pad")
    self.cls_id = self._find_piece("cls")
    self.sep_id = self._find_piece("sep")
    self.mask_id = self._find_piece("mask")

  @classmethod
  def from_model_file(cls, path: str | os.PathLike) -> "SentencePieceTokenizer":
    try:
      return cls(epath.Path(path).read_bytes())
    except RuntimeError as error:  # SentencePiece's parse error names no file
      raise common.DataFileError(f"{path}: not a SentencePiece model ({error})"
                                 ) from error

  def _find_piece(self, role: str) -> int:
    for piece in _SENTENCEPIECE_CANDIDATES[role]:
      piece_id = self._processor.piece_to_id(piece)
      # Unknown pieces map to the unk id, so check the piece really is there.
      if self._processor.id_to_piece(piece_id) == piece:
        return piece_id
    raise ValueError(f"SentencePiece model has no {role} piece; tried "
                     f"{_SENTENCEPIECE_CANDIDATES[role]}")

  @property
  def vocab_size(self) -> int:
    return self._processor.get_piece_size()

  def text_to_ids(self, text: str) -> list[int]:
    return self._processor.encode(text, out_type=int)

  def ids_to_text(self, ids: Sequence[int]) -> str:
    return self._processor.decode(list(ids))

  def __getstate__(self):
    return {"model_proto": self._model_proto}

  def __setstate__(self, state):
    self.__init__(state["model_proto"])


def from_config(spec: str) -> Tokenizer:
  """A tokenizer from "kind:path"; kinds: wordpiece, wordpiece_cased, sentencepiece."""
  kind, sep, path = spec.partition(":")
  if not sep or not path:
    raise ValueError(f"tokenizer spec must be 'kind:path', got {spec!r}")
  if kind == "wordpiece":
    return WordPieceTokenizer.from_vocab_file(path, lowercase=True)
  if kind == "wordpiece_cased":
    return WordPieceTokenizer.from_vocab_file(path, lowercase=False)
  if kind == "sentencepiece":
    return SentencePieceTokenizer.from_model_file(path)
  raise ValueError(f"unknown tokenizer kind {kind!r} in {spec!r}")


SPEC_FILE = "spec.txt"  # in a saved copy's folder: "kind:file name"


def save_copy(spec: str, folder: str | os.PathLike) -> None:
  """Copies the vocabulary or model file that `spec` names into `folder`, with a spec
  file naming the copy, so that a run's workdir carries the tokenizer it trained with."""
  kind, _, path = spec.partition(":")
  source, folder = epath.Path(path), epath.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  (folder / source.name).write_bytes(source.read_bytes())
  (folder / SPEC_FILE).write_text(f"{kind}:{source.name}\n")


def load_copy(folder: str | os.PathLike) -> Tokenizer | None:
  """The tokenizer `save_copy` left in `folder`, or None where there is none."""
  spec_file = epath.Path(folder) / SPEC_FILE
  if not spec_file.exists():
    return None
  kind, _, name = spec_file.read_text().strip().partition(":")
  return from_config(f"{kind}:{epath.Path(folder) / name}")


def _corpus_lines(corpus: Corpus) -> Iterator[str]:
  """Lines of text from a file, a list or tuple of files, or any other iterable of text.

  A list or tuple always means files: pass `iter(sentences)` for text in memory.
  Files are read through etils.epath, so `gs://` corpora work too.
  """
  if isinstance(corpus, (str, os.PathLike)):
    corpus = [corpus]
  if isinstance(corpus, (list, tuple)):
    for path in corpus:
      with epath.Path(path).open("r", encoding="utf-8") as f:
        for line in f:
          yield line.rstrip("\n")
  else:
    yield from corpus


def train_wordpiece(corpus: Corpus, vocab_size: int, out_path: str | os.PathLike, *,
                    lowercase: bool = True, min_frequency: int = 2) -> epath.Path:
  """Trains a BERT WordPiece vocabulary and writes it as vocab.txt to `out_path`.

  The five BERT special tokens take ids 0-4 ([PAD] first, so padding is id 0); the file
  loads with `WordPieceTokenizer.from_vocab_file` and with Hugging Face's BertTokenizer.
  """
  trainer_tokenizer = tokenizers.BertWordPieceTokenizer(
      lowercase=lowercase, strip_accents=None, clean_text=True,
      handle_chinese_chars=True)
  trainer_tokenizer.train_from_iterator(
      _corpus_lines(corpus), vocab_size=vocab_size, min_frequency=min_frequency,
      special_tokens=list(BERT_SPECIAL_TOKENS), show_progress=False)
  by_id = sorted(trainer_tokenizer.get_vocab().items(), key=lambda item: item[1])
  if [i for _, i in by_id] != list(range(len(by_id))):
    raise RuntimeError("trained WordPiece ids are not contiguous")
  out_path = epath.Path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  out_path.write_text("".join(token + "\n" for token, _ in by_id), encoding="utf-8")
  return out_path


def train_sentencepiece(corpus: Corpus, model_prefix: str | os.PathLike,
                        vocab_size: int, *, model_type: str = "unigram",
                        character_coverage: float = 0.9995) -> epath.Path:
  """Trains a SentencePiece model; writes `model_prefix`.model and .vocab.

  Ids 0 and 1 are [PAD] and [UNK]; [CLS], [SEP] and [MASK] are user-defined symbols
  (never split, matched in raw text); there is no BOS or EOS. The prefix may be
  local or `gs://` (training happens in a local temporary directory).

  Returns:
    The path of the .model file, loadable by `SentencePieceTokenizer.from_model_file`.
  """
  model_prefix = epath.Path(model_prefix)
  with tempfile.TemporaryDirectory() as tmp:
    local_prefix = os.path.join(tmp, model_prefix.name)
    spm.SentencePieceTrainer.train(
        sentence_iterator=_corpus_lines(corpus), model_prefix=local_prefix,
        vocab_size=vocab_size, model_type=model_type,
        character_coverage=character_coverage, pad_id=0, pad_piece=PAD, unk_id=1,
        unk_piece=UNK, bos_id=-1, eos_id=-1, user_defined_symbols=[CLS, SEP, MASK],
        num_threads=os.cpu_count() or 1, minloglevel=2)
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".model", ".vocab"):
      target = model_prefix.parent / (model_prefix.name + suffix)
      target.write_bytes(epath.Path(local_prefix + suffix).read_bytes())
  return model_prefix.parent / (model_prefix.name + ".model")
