"""Tests for the format readers: the synthetic world round-trips, bad entries are counted
and named by what a user can find, a file that cannot be parsed is named."""

import json

import pytest

from conftest import load_json
from pixelbert_jax.data import answers
from pixelbert_jax.data import pack
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import sources
from pixelbert_jax.data import synthetic
from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.data.readers import coco
from pixelbert_jax.data.readers import common
from pixelbert_jax.data.readers import flickr30k
from pixelbert_jax.data.readers import nlvr2
from pixelbert_jax.data.readers import visual_genome
from pixelbert_jax.data.readers import snli_ve
from pixelbert_jax.data.readers import vqa
from pixelbert_jax.metrics import nlvr2 as nlvr2_metric

BAD_UTF8 = b"\xff\xfe broken"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  return synthetic.generate(str(tmp_path_factory.mktemp("world")), seed=1, num_images=30)


def _write_with_bad_bytes(path, data):
  """Writes JSON, then swaps the text BAD_TEXT for bytes that are not UTF-8."""
  raw = json.dumps(data).encode().replace(b"BAD_TEXT", BAD_UTF8)
  path.write_bytes(raw)
  return path


def test_synthetic_world_round_trips_through_every_reader(world):
  skips = skips_lib.SkipCounter()
  captions = list(coco.read_coco_captions(
      world["coco_captions_train"], f"{world['coco_root']}/train2014", skips=skips))
  assert len(captions) == len(load_json(world["coco_captions_train"])["annotations"])
  karpathy = list(coco.read_karpathy(world["karpathy_coco"], world["coco_root"],
                                     ("train", "restval", "val", "test"), skips=skips))
  assert {c.text for c in captions} <= {k.text for k in karpathy}
  test_items = list(coco.read_karpathy_retrieval(world["karpathy_coco"],
                                                 world["coco_root"], skips=skips))
  assert test_items and all(len(i.texts) == 5 for i in test_items)
  flickr = list(flickr30k.read_flickr30k_retrieval(
      world["karpathy_flickr30k"], world["flickr30k_images"], "test", skips=skips))
  assert flickr and flickr[0].image_path.endswith(f"{flickr[0].image_id}.jpg")
  regions = list(visual_genome.read_visual_genome(
      world["vg_region_descriptions"], world["vg_image_data"], world["vg_root"],
      skips=skips))
  assert regions and regions[0].image_path.endswith("VG_100K/1.jpg")
  assert skips.total == 0


def test_vqa_and_nlvr2_round_trip(world):
  skips = skips_lib.SkipCounter()
  examples = list(vqa.read_vqa(world["vqa_val2014_questions"],
                               world["vqa_val2014_annotations"],
                               f"{world['coco_root']}/val2014", skips=skips))
  assert examples and all(len(e.answers) == 10 for e in examples)
  assert {e.answer_type for e in examples} <= {"yes/no", "number", "other"}
  test = list(vqa.read_vqa(world["vqa_test-dev2015_questions"], None,
                           f"{world['coco_root']}/test2015", skips=skips))
  assert test and test[0].answers == () and "COCO_test2015_" in test[0].image_path
  pairs = list(nlvr2.read_nlvr2(world["nlvr2_train"], world["nlvr2_images"], skips=skips))
  assert pairs and {p.label for p in pairs} <= {True, False}
  assert pairs[0].left_path.endswith("-img0.png")
  assert skips.total == 0


def test_coco_captions_count_every_bad_entry(tmp_path):
  data = {"images": [{"id": 1, "file_name": "a.jpg"}, {"file_name": "no_id.jpg"}],
          "annotations": [
              {"id": 10, "image_id": 1, "caption": "A red circle."},
              {"id": 11, "image_id": 1},                          # No caption.
              {"id": 12, "image_id": 1, "caption": "   "},          # Empty.
              {"id": 13, "image_id": 1, "caption": "BAD_TEXT"},     # Not UTF-8.
              {"id": 14, "image_id": 2, "caption": "A blue star."},  # Unknown image.
          ]}
  path = _write_with_bad_bytes(tmp_path / "captions_train2017.json", data)
  skips = skips_lib.SkipCounter()
  items = list(coco.read_coco_captions(path, tmp_path / "train2017", skips=skips))
  assert [i.text for i in items] == ["A red circle."]
  assert items[0].image_path == str(tmp_path / "train2017" / "a.jpg")
  assert skips.counts == {"missing_field": 2, "empty_text": 1, "bad_encoding": 1,
                          "missing_image": 1}
  assert "13" in skips.examples("bad_encoding")
  # The image without an id by its file name, captions by their official ids.
  assert skips.examples("missing_field") == ["no_id.jpg", "11"]
  assert "missing_image: 1 (e.g. 14)" in skips.summary()


def _karpathy_image(split, raws, **extra):
  return {"filename": "x.jpg", "split": split, **extra,
          "sentences": [{"raw": r, "tokens": [], "imgid": 0, "sentid": 0} for r in raws]}


def test_karpathy_and_flickr30k_skip_bad_sentences_and_images(tmp_path):
  data = {"dataset": "flickr30k", "images": [
      _karpathy_image("train", ["A cat.", "", "BAD_TEXT"]),
      _karpathy_image("test", ["Not wanted."]),
      {"filename": "y.jpg", "split": "train"},  # No sentences.
  ]}
  path = _write_with_bad_bytes(tmp_path / "dataset_flickr30k.json", data)
  skips = skips_lib.SkipCounter()
  items = list(flickr30k.read_flickr30k(path, tmp_path, skips=skips))
  assert [(i.image_id, i.text) for i in items] == [("x", "A cat.")]
  assert skips.counts == {"empty_text": 1, "bad_encoding": 1, "missing_field": 1}
  assert skips.examples("empty_text") == ["x.jpg sentences[1]"]
  assert skips.examples("missing_field") == ["y.jpg"]


def test_visual_genome_counts_bad_regions_and_unknown_images(tmp_path):
  (tmp_path / "image_data.json").write_text(json.dumps([
      {"image_id": 1, "url": "https://x/VG_100K_2/1.jpg", "coco_id": None},
      {"image_id": 2, "url": "https://x/VG_100K/2.jpg", "coco_id": 99},
      {"url": "https://x/VG_100K/3.jpg"}]))
  _write_with_bad_bytes(tmp_path / "region_descriptions.json", [
      {"id": 1, "regions": [{"region_id": 5, "phrase": "red ball"},
                            {"region_id": 6, "phrase": ""},
                            {"region_id": 7, "phrase": "BAD_TEXT"},
                            {"region_id": 8}]},
      {"id": 2, "regions": [{"region_id": 9, "phrase": "from a coco test image"}]},
      {"id": 4, "regions": [{"region_id": 10, "phrase": "no image data"}]},
      {"regions": []}])
  skips = skips_lib.SkipCounter()
  items = list(visual_genome.read_visual_genome(
      tmp_path / "region_descriptions.json", tmp_path / "image_data.json", tmp_path,
      exclude_coco_ids=[99], skips=skips))
  assert [(i.text, i.image_path) for i in items] == [
      ("red ball", str(tmp_path / "VG_100K_2" / "1.jpg"))]
  assert skips.counts == {"missing_field": 3, "empty_text": 1, "bad_encoding": 1,
                          "missing_image": 1}
  assert skips.examples("missing_field") == [
      "image_data.json[2]", "region 8", "region_descriptions.json[3]"]


def _answers(answer):
  return [{"answer": answer, "answer_confidence": "yes", "answer_id": i + 1}
          for i in range(10)]


def test_vqa_counts_questions_without_annotations_and_bad_fields(tmp_path):
  questions = {"data_subtype": "val2014", "task_type": "Open-Ended", "questions": [
      {"image_id": 1, "question": "What color?", "question_id": 1000},
      {"image_id": 1, "question": "No annotation?", "question_id": 1001},
      {"image_id": 1, "question": "", "question_id": 1002},
      {"image_id": 1, "question": "BAD_TEXT", "question_id": 1003},
      {"image_id": 1, "question_id": 1004},
      {"image_id": 1, "question": "Broken answers?", "question_id": 1005}]}
  annotations = {"annotations": [
      {"question_id": q, "image_id": 1, "answers": _answers("red"),
       "answer_type": "other", "question_type": "what color"} for q in (1000, 1002, 1003)]
      + [{"question_id": 1005, "answers": [{"answer_id": 1}]}]}
  _write_with_bad_bytes(tmp_path / "q.json", questions)
  (tmp_path / "a.json").write_text(json.dumps(annotations))
  skips = skips_lib.SkipCounter()
  examples = list(vqa.read_vqa(tmp_path / "q.json", tmp_path / "a.json",
                               tmp_path / "val2014", skips=skips))
  assert [e.question_id for e in examples] == [1000]
  assert examples[0].answers == ("red",) * 10
  assert examples[0].image_path.endswith("val2014/COCO_val2014_000000000001.jpg")
  assert skips.counts == {"missing_annotation": 1, "empty_text": 1, "bad_encoding": 1,
                          "missing_field": 2}
  assert skips.examples("missing_annotation") == ["1001"]
  assert skips.examples("missing_field") == ["1004", "1005"]


def test_nlvr2_counts_missing_images_bad_lines_and_labels(tmp_path):
  images = tmp_path / "images" / "dev"
  images.mkdir(parents=True)
  for pair in (0, 1, 2, 3, 4):
    for side in (0, 1):
      if (pair, side) != (1, 1):  # Pair 1 lacks its right image.
        (images / f"dev-7-{pair}-img{side}.png").write_bytes(b"png")
  lines = [json.dumps({"identifier": "dev-7-0-0", "sentence": "One dog.", "label": "True"}),
           json.dumps({"identifier": "dev-7-1-0", "sentence": "Two dogs.", "label": "False"}),
           "{not json",
           json.dumps({"identifier": "dev-7-2-0", "sentence": "x", "label": "maybe"}),
           json.dumps({"identifier": "dev-7-3-0", "sentence": "BAD_TEXT"}),
           json.dumps({"identifier": "dev-7-4-1", "sentence": "Hidden label."}),
           json.dumps({"sentence": "No identifier."})]
  raw = "\n".join(lines).encode().replace(b"BAD_TEXT", BAD_UTF8)
  (tmp_path / "dev.json").write_bytes(raw)
  skips = skips_lib.SkipCounter()
  examples = list(nlvr2.read_nlvr2(tmp_path / "dev.json", tmp_path / "images", skips=skips))
  assert [(e.identifier, e.label) for e in examples] == [("dev-7-0-0", True),
                                                         ("dev-7-4-1", None)]
  assert examples[0].right_path == str(images / "dev-7-0-img1.png")
  assert skips.counts == {"missing_image": 1, "bad_json": 1, "bad_label": 1,
                          "bad_encoding": 1, "missing_field": 1}
  assert skips.examples("bad_json") == ["dev.json:3"]
  assert skips.examples("missing_field") == ["dev.json:7"]
  assert skips.examples("missing_image") == ["dev-7-1-0"]


CUT_SHORT = '{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id'

# Every reader of a whole-file JSON format, called on one file cut short.
JSON_READERS = {
    "coco": lambda f, d: list(coco.read_coco_captions(f, d)),
    "karpathy": lambda f, d: list(coco.read_karpathy(f, d)),
    "karpathy_retrieval": lambda f, d: list(coco.read_karpathy_retrieval(f, d)),
    "karpathy_ids": lambda f, d: coco.karpathy_coco_ids(f, ("test",)),
    "flickr30k": lambda f, d: list(flickr30k.read_flickr30k(f, d)),
    "vg_regions": lambda f, d: list(visual_genome.read_visual_genome(
        f, _vg_image_data(d), d)),
    "vg_image_data": lambda f, d: list(visual_genome.read_visual_genome(
        _vg_regions(d), f, d)),
    "vqa_questions": lambda f, d: list(vqa.read_vqa(f, None, d)),
    "vqa_annotations": lambda f, d: list(vqa.read_vqa(_vqa_questions(d), f, d)),
    "vqa_question_ids": lambda f, d: vqa.question_ids(f),
    "coco_image_sizes": lambda f, d: sources.coco_image_sizes(f, d),
    "answer_vocab": lambda f, d: answers.AnswerVocab.load(f),
    "pack_meta": lambda f, d: pack.PackedSource(f.parent),
}


def _vg_image_data(folder):
  (folder / "image_data.json").write_text('[{"image_id": 1}]')
  return folder / "image_data.json"


def _vg_regions(folder):
  (folder / "region_descriptions.json").write_text('[{"id": 1, "regions": []}]')
  return folder / "region_descriptions.json"


def _vqa_questions(folder):
  (folder / "q.json").write_text(json.dumps({"questions": [
      {"image_id": 1, "question": "What?", "question_id": 7}]}))
  return folder / "q.json"


@pytest.mark.parametrize("reader", sorted(JSON_READERS))
def test_a_json_file_cut_short_is_named_with_its_position(tmp_path, reader):
  path = tmp_path / ("meta.json" if reader == "pack_meta" else "annotations.json")
  path.write_text(CUT_SHORT)
  with pytest.raises(common.DataFileError,
                     match=f"{path}: not valid JSON at line 1, column ") as raised:
    JSON_READERS[reader](path, tmp_path)
  assert isinstance(raised.value, ValueError)
  assert isinstance(raised.value.__cause__, json.JSONDecodeError)


def test_a_json_file_of_the_wrong_shape_is_named(tmp_path):
  path = tmp_path / "region_descriptions.json"
  path.write_text('{"regions": []}')
  with pytest.raises(common.DataFileError, match=f"{path}: expected a JSON array"):
    list(visual_genome.read_visual_genome(path, _vg_image_data(tmp_path), tmp_path))


@pytest.mark.parametrize("reader", ["nlvr2", "snli_ve"])
def test_a_json_lines_file_cut_short_skips_its_last_line_by_file_and_line(tmp_path,
                                                                          reader):
  path = tmp_path / "dev.jsonl"
  path.write_text('{"identifier": "dev-1-0-0", "pairID": "p0", "sentence": "A."}\n'
                  '{"identifier": "dev-1-1-0", "sent')
  skips = skips_lib.SkipCounter()
  read = {"nlvr2": nlvr2.read_nlvr2, "snli_ve": snli_ve.read_snli_ve}[reader]
  list(read(path, tmp_path, skips=skips))
  assert skips.examples("bad_json") == ["dev.jsonl:2"]


def test_official_nlvr2_files_cut_short_are_named_with_the_line(tmp_path):
  labels = tmp_path / "dev.json"
  labels.write_text('{"identifier": "dev-1-0-0", "label": "True"}\n{"identifier": "d')
  with pytest.raises(ValueError, match=f"{labels}:2: not a JSON object"):
    nlvr2_metric.read_labels(labels)
  predictions = tmp_path / "predictions.csv"
  predictions.write_text("dev-1-0-0,True\ndev-1-1-0")
  with pytest.raises(ValueError, match=f"{predictions}:2: expected"):
    nlvr2_metric.read_predictions(predictions)


def test_a_damaged_tokenizer_file_is_named(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_bytes(b"[PAD]\n[UNK]\n\xff\xfe\n")
  with pytest.raises(common.DataFileError, match=f"{vocab}:3: not UTF-8"):
    tokenizer_lib.WordPieceTokenizer.from_vocab_file(vocab)
  model = tmp_path / "spm.model"
  model.write_bytes(b"not a model")
  with pytest.raises(common.DataFileError, match=f"{model}: not a SentencePiece model"):
    tokenizer_lib.SentencePieceTokenizer.from_model_file(model)
