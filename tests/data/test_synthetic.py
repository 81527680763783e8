"""Tests for the embedded synthetic world: formats, determinism, grounding, noise."""

import collections
import json
import os

import numpy as np
from PIL import Image
import pytest
import tokenizers

from conftest import load_json
from pixelbert_jax.data import synthetic


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  return synthetic.generate(str(tmp_path_factory.mktemp("world")), seed=3, num_images=40)


def _all_files(root):
  files = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, root)] = f.read()
  return files


def test_same_seed_writes_identical_bytes_other_seed_differs(tmp_path):
  first = _all_files(synthetic.generate(str(tmp_path / "a"), seed=5, num_images=12)["root"])
  again = _all_files(synthetic.generate(str(tmp_path / "b"), seed=5, num_images=12)["root"])
  other = _all_files(synthetic.generate(str(tmp_path / "c"), seed=6, num_images=12)["root"])
  assert first == again
  assert first.keys() == other.keys()
  assert first["coco/dataset_coco.json"] != other["coco/dataset_coco.json"]


def test_coco_captions_and_karpathy_have_the_official_layout(world):
  data = load_json(world["coco_captions_train"])
  assert set(data) >= {"info", "images", "annotations", "licenses"}
  image = data["images"][0]
  assert image["file_name"] == f"COCO_train2014_{image['id']:012d}.jpg"
  assert os.path.exists(os.path.join(world["coco_root"], "train2014", image["file_name"]))
  per_image = collections.Counter(a["image_id"] for a in data["annotations"])
  assert set(per_image.values()) == {5}
  karpathy = load_json(world["karpathy_coco"])
  assert karpathy["dataset"] == "coco"
  assert {i["split"] for i in karpathy["images"]} == {"train", "restval", "val", "test"}
  entry = karpathy["images"][0]
  assert entry["sentids"] == [s["sentid"] for s in entry["sentences"]]
  assert entry["sentences"][0]["tokens"] == entry["sentences"][0]["raw"].lower(
      ).rstrip(".").replace(",", "").split()


def test_images_vary_in_size_aspect_and_format(world):
  sizes, formats = set(), set()
  for folder in ("coco/train2014", "nlvr2/images/dev"):
    directory = os.path.join(world["root"], folder)
    for name in sorted(os.listdir(directory))[:20]:
      with Image.open(os.path.join(directory, name)) as image:
        sizes.add(image.size)
        formats.add(image.format)
        assert image.mode == "RGB"
  assert formats == {"JPEG", "PNG"}
  aspects = [w / h for w, h in sizes]
  assert min(aspects) < 0.9 and max(aspects) > 1.2
  assert all(96 <= min(w, h) <= 160 for w, h in sizes)


def test_vqa_has_ten_answers_with_real_disagreement(world):
  annotations = load_json(world["vqa_train2014_annotations"])["annotations"]
  questions = load_json(world["vqa_train2014_questions"])
  assert questions["task_type"] == "Open-Ended"
  assert len(questions["questions"]) == len(annotations)
  assert all([a["answer_id"] for a in q["answers"]] == list(range(1, 11))
             for q in annotations)
  distinct = [len({a["answer"] for a in q["answers"]}) for q in annotations]
  assert 0.3 < np.mean([d > 1 for d in distinct]) < 0.95
  assert {q["answer_type"] for q in annotations} == {"yes/no", "number", "other"}
  assert "v2_OpenEnded_mscoco_test-dev2015_questions.json" in world[
      "vqa_test-dev2015_questions"]
  assert "vqa_test-dev2015_annotations" not in world
  # As released: test-dev is a part of test-std, whose file holds every test question.
  test_dev = {q["question_id"] for q in load_json(world["vqa_test-dev2015_questions"])["questions"]}
  test_std = {q["question_id"] for q in load_json(world["vqa_test2015_questions"])["questions"]}
  assert test_dev and test_dev < test_std
  assert "vqa_test2015_annotations" not in world


def test_answers_include_formatting_variants_and_synonyms():
  rng = np.random.default_rng(0)
  question = synthetic.Question("How many objects are there?", "2", "number",
                                "how many", "number")
  answers = collections.Counter(
      a for _ in range(300) for a in synthetic.annotator_answers(question, rng))
  assert answers.most_common(1)[0][0] == "2"
  assert {"two", "2.", "1", "3"} <= set(answers)


def test_nlvr2_names_pairs_like_nlvr2_and_is_balanced(world):
  labels = []
  for split in ("train", "dev", "test1"):
    with open(world[f"nlvr2_{split}"], encoding="utf-8") as f:
      for line in f:
        example = json.loads(line)
        split_name, set_id, pair, _ = example["identifier"].split("-")
        assert split_name == split
        folder = os.path.join(world["nlvr2_images"], split, example.get("directory", ""))
        for side in (0, 1):
          assert os.path.exists(os.path.join(folder, f"{split}-{set_id}-{pair}-img{side}.png"))
        labels.append(example["label"])
  assert set(labels) == {"True", "False"}
  assert 0.25 < labels.count("True") / len(labels) < 0.75


def _world_texts(world):
  texts = [a["caption"] for a in load_json(world["coco_captions_train"])["annotations"]]
  texts += [q["question"] for q in load_json(world["vqa_train2014_questions"])["questions"]]
  texts += [a["answer"] for q in load_json(world["vqa_train2014_annotations"])["annotations"]
            for a in q["answers"]]
  with open(world["nlvr2_train"], encoding="utf-8") as f:
    texts += [json.loads(line)["sentence"] for line in f]
  return texts


def test_vocab_is_bert_ordered_and_covers_every_text(world):
  with open(world["vocab"], encoding="utf-8") as f:
    vocab = f.read().split()
  assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  tokenizer = tokenizers.BertWordPieceTokenizer(world["vocab"], lowercase=True)
  for text in _world_texts(world):
    assert "[UNK]" not in tokenizer.encode(text).tokens, text


def _masked_word_accuracy(words, texts):
  """Accuracy of the best text-only guess of a masked word given its neighbours.

  Each occurrence of a word from `words` is masked; its (previous, next) words
  and the count of other `words` in the text form the context. A majority
  guess per context is fit on half the texts and scored on the other half.
  """
  samples = []
  for text in texts:
    # Relations are masked as whole phrases ("left of"), like whole-word masking.
    text = text.lower().replace("left of a", "left_of a").replace("right of a", "right_of a")
    tokens = text.rstrip(".?").replace(",", "").split()
    for i, token in enumerate(tokens):
      if token in words:
        context = (tokens[i - 1] if i else "", tokens[i + 1] if i + 1 < len(tokens) else "",
                   tuple(t for t in tokens if t in words and t != token)[:1])
        samples.append((context, token))
  half = len(samples) // 2
  table = collections.defaultdict(collections.Counter)
  for context, token in samples[:half]:
    table[context][token] += 1
  overall = collections.Counter(t for _, t in samples[:half]).most_common(1)[0][0]
  hits = [(table[c].most_common(1)[0][0] if table[c] else overall) == t
          for c, t in samples[half:]]
  return float(np.mean(hits)), len(hits)


@pytest.mark.parametrize("words", [
    tuple(synthetic.COLOURS), synthetic.SHAPES, synthetic.NUMBER_WORDS[1:5],
    ("left_of", "right_of", "above", "below")])
def test_visual_words_cannot_be_guessed_from_text(words):
  rng = np.random.default_rng(11)
  texts = []
  for _ in range(1500):
    texts += synthetic.make_captions(synthetic.sample_scene(rng), rng)
  accuracy, count = _masked_word_accuracy(set(words), texts)
  chance = 1 / len(words)
  assert count > 500
  # A text-only guesser does (nearly) no better than chance: no template leaks it.
  assert accuracy < chance + 0.06, (words, accuracy)


def test_yes_no_answers_cannot_be_guessed_from_the_question():
  rng = np.random.default_rng(2)
  by_kind = collections.defaultdict(collections.Counter)
  for _ in range(1500):
    for question in synthetic.make_questions(synthetic.sample_scene(rng), rng):
      if question.answer_type == "yes/no":
        by_kind[question.question_type][question.answer] += 1
  for kind, counts in by_kind.items():
    assert 0.4 < counts["yes"] / sum(counts.values()) < 0.6, (kind, counts)


def test_generation_cli_writes_the_world(tmp_path, capsys):
  synthetic.main(["--out", str(tmp_path), "--seed", "1", "--num_images", "8"])
  assert "images/s" in capsys.readouterr().out
  assert os.path.exists(tmp_path / "coco" / "annotations" / "captions_val2014.json")
  assert os.path.exists(tmp_path / "flickr30k" / "dataset_flickr30k.json")
