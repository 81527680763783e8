"""Tests for pixelbert_jax.data.tokenizer: Hugging Face BERT parity, SentencePiece."""

import pickle

import numpy as np
import pytest

from pixelbert_jax.data import tokenizer as tok

# Accents, capitals, punctuation, CJK, emoji, control and zero-width characters, words
# the vocabulary lacks and words it can only spell in pieces.
PARITY_TEXTS = (
    "Héllo, Wörld! Café NIÑO über",
    "ÜBER-riding the horse; the man's horses?",
    "A man riding a horse 中国人 in the 公园 😀🐎",
    "unknown xyzzy words rides... (quickly)",
    "  \tthe\u200b man\x00 and\u00a0a horse\n",
    "the [MASK] is riding [SEP] [cls] ",
    "naïve coöperation — résumé “quoted” ‘text’ £5 & 3.14%",
    "",
    "supercalifragilisticexpialidocious " * 3,
    "a" * 150,
)

HANDMADE_VOCAB = [
    *tok.BERT_SPECIAL_TOKENS, "the", "a", "an", "man", "horse", "##s", "riding",
    "ride", "##ing", "cafe", "nino", "uber", "hello", "world", "un", "##known", "is",
    "in", "and", ",", ".", "!", "?", "'", "s", "-", ";", "(", ")", "中", "国", "公",
    "naive", "resume", "co", "##op", "##eration", "quick", "##ly", "super", "##cal",
    "3", "14", "%", "£", "5", "&",
]


def _write_vocab(path, tokens):
  path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
  return path


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
  rng = np.random.default_rng(0)
  words = ("the a man woman horse riding rides dog cat red blue green big small "
           "on under near café niño über Zoë 中 国 公 园 😀 , . ! ?").split()
  lines = [" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(400)]
  path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


@pytest.fixture(scope="module")
def handmade_vocab(tmp_path_factory):
  return _write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt", HANDMADE_VOCAB)


@pytest.fixture(scope="module")
def trained_vocab(tmp_path_factory, corpus_file):
  out = tmp_path_factory.mktemp("trained") / "sub" / "vocab.txt"
  return tok.train_wordpiece(corpus_file, vocab_size=120, out_path=out, min_frequency=1)


def _hf_tokenizers(vocab_path, lowercase=True):
  transformers = pytest.importorskip("transformers")
  # The legacy class is the pure-Python BERT tokenizer: an independent reference.
  legacy = transformers.models.bert.BertTokenizerLegacy
  return (transformers.BertTokenizer(str(vocab_path), do_lower_case=lowercase),
          legacy(str(vocab_path), do_lower_case=lowercase))


@pytest.mark.parametrize("vocab_name", ["handmade_vocab", "trained_vocab"])
@pytest.mark.parametrize("lowercase", [True, False])
def test_wordpiece_ids_match_hugging_face_bert(request, vocab_name, lowercase):
  vocab_path = request.getfixturevalue(vocab_name)
  ours = tok.WordPieceTokenizer.from_vocab_file(vocab_path, lowercase=lowercase)
  references = _hf_tokenizers(vocab_path, lowercase)
  for text in PARITY_TEXTS:
    for max_len in (2, 5, 16, 64):
      ids, mask = ours.encode(text, max_len)
      for reference in references:
        expected = reference(text, max_length=max_len, truncation=True,
                             padding="max_length")
        assert ids.tolist() == expected["input_ids"], (type(reference), text, max_len)
        assert mask.tolist() == expected["attention_mask"], (text, max_len)


def test_encode_layout_and_special_ids(handmade_vocab):
  ours = tok.WordPieceTokenizer.from_vocab_file(handmade_vocab)
  assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (
      0, 1, 2, 3, 4)
  assert ours.vocab_size == len(HANDMADE_VOCAB)
  ids, mask = ours.encode("The man, riding!", 9)
  assert ids.dtype == np.int32 and mask.dtype == np.int32
  vocab = {t: i for i, t in enumerate(HANDMADE_VOCAB)}
  words = ["[CLS]", "the", "man", ",", "riding", "!", "[SEP]", "[PAD]", "[PAD]"]
  assert ids.tolist() == [vocab[w] for w in words]
  assert mask.tolist() == [1] * 7 + [0] * 2
  truncated, _ = ours.encode("The man, riding!", 4)
  assert truncated.tolist() == [vocab[w] for w in ["[CLS]", "the", "man", "[SEP]"]]
  with pytest.raises(ValueError):
    ours.encode("the", 1)


def test_decode_skips_specials_and_padding(handmade_vocab):
  ours = tok.WordPieceTokenizer.from_vocab_file(handmade_vocab)
  ids, _ = ours.encode("The man is riding horses xyzzy.", 16)
  assert ours.decode(ids) == "the man is riding horses [UNK]."


def test_wordpiece_pickles_for_grain_workers(trained_vocab):
  ours = tok.WordPieceTokenizer.from_vocab_file(trained_vocab)
  clone = pickle.loads(pickle.dumps(ours))
  for text in PARITY_TEXTS:
    np.testing.assert_array_equal(clone.encode(text, 32)[0], ours.encode(text, 32)[0])


def test_trained_vocab_layout(trained_vocab, corpus_file):
  lines = trained_vocab.read_text(encoding="utf-8").splitlines()
  assert lines[:5] == list(tok.BERT_SPECIAL_TOKENS)
  assert len(lines) == len(set(lines)) <= 120
  ours = tok.WordPieceTokenizer.from_vocab_file(trained_vocab)
  # Everything in the training corpus is spelled without [UNK].
  first_line = corpus_file.read_text(encoding="utf-8").splitlines()[0]
  assert ours.unk_id not in ours.encode(first_line, 64)[0]


def test_train_wordpiece_from_an_iterator(tmp_path):
  sentences = ["a red horse", "a blue dog", "the red dog"] * 20
  path = tok.train_wordpiece(iter(sentences), vocab_size=60,
                             out_path=tmp_path / "v.txt", min_frequency=1)
  ours = tok.WordPieceTokenizer.from_vocab_file(path)
  assert ours.decode(ours.encode("A red dog", 8)[0]) == "a red dog"


def test_vocab_without_special_tokens_is_refused(tmp_path):
  path = _write_vocab(tmp_path / "v.txt", ["[PAD]", "[UNK]", "the"])
  with pytest.raises(ValueError, match="CLS"):
    tok.WordPieceTokenizer.from_vocab_file(path)


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory, corpus_file):
  prefix = tmp_path_factory.mktemp("spm") / "tiny"
  return tok.train_sentencepiece(corpus_file, prefix, vocab_size=64)


def test_sentencepiece_round_trip(sentencepiece_model, corpus_file):
  assert sentencepiece_model.exists()
  assert sentencepiece_model.with_suffix(".vocab").exists()
  sp = tok.SentencePieceTokenizer.from_model_file(sentencepiece_model)
  assert (sp.pad_id, sp.unk_id) == (0, 1)
  assert len({sp.pad_id, sp.unk_id, sp.cls_id, sp.sep_id, sp.mask_id}) == 5
  for line in corpus_file.read_text(encoding="utf-8").splitlines()[:20]:
    ids, mask = sp.encode(line, 128)
    assert ids[0] == sp.cls_id and ids[mask.sum() - 1] == sp.sep_id
    assert (ids[mask.sum():] == sp.pad_id).all()
    assert sp.decode(ids) == " ".join(line.split())


def test_sentencepiece_truncates_pickles_and_keeps_mask_symbol(sentencepiece_model):
  sp = tok.SentencePieceTokenizer.from_model_file(sentencepiece_model)
  ids, mask = sp.encode("a red horse near the big dog " * 10, 12)
  assert ids.shape == (12,) and mask.all() and ids[-1] == sp.sep_id
  assert sp.mask_id in sp.text_to_ids("the [MASK] horse")
  clone = pickle.loads(pickle.dumps(sp))
  np.testing.assert_array_equal(clone.encode("the red dog", 8)[0],
                                sp.encode("the red dog", 8)[0])


def test_from_config(handmade_vocab, sentencepiece_model):
  uncased = tok.from_config(f"wordpiece:{handmade_vocab}")
  cased = tok.from_config(f"wordpiece_cased:{handmade_vocab}")
  assert isinstance(uncased, tok.WordPieceTokenizer)
  assert uncased.encode("The", 3)[0][1] != cased.encode("The", 3)[0][1]
  sp = tok.from_config(f"sentencepiece:{sentencepiece_model}")
  assert isinstance(sp, tok.SentencePieceTokenizer)
  for bad in ("wordpiece", "bpe:/x", "wordpiece:"):
    with pytest.raises(ValueError):
      tok.from_config(bad)


@pytest.mark.parametrize("kind", ["wordpiece_cased", "sentencepiece"])
def test_saved_copy_encodes_like_the_original(kind, handmade_vocab, sentencepiece_model,
                                              tmp_path):
  source = handmade_vocab if kind.startswith("wordpiece") else sentencepiece_model
  original = tok.from_config(f"{kind}:{source}")
  assert tok.load_copy(tmp_path / "copy") is None
  tok.save_copy(f"{kind}:{source}", tmp_path / "copy")
  copy = tok.load_copy(tmp_path / "copy")
  assert type(copy) is type(original)
  text = "The red horse near the big dog"
  np.testing.assert_array_equal(copy.encode(text, 16)[0], original.encode(text, 16)[0])
