"""Tests of packing records into ArrayRecord shards: packed batches equal raw batches."""

import json

import numpy as np
import pytest

from conftest import assert_same_batches, load_json
from pixelbert_jax.data import pack
from pixelbert_jax.data import pipeline
from pixelbert_jax.data import records
from pixelbert_jax.data import sources
from pixelbert_jax.data import synthetic
from pixelbert_jax.data.readers import coco
from pixelbert_jax.data.readers import nlvr2
from pixelbert_jax.data.readers import vqa

CONFIG = {"global_batch_size": 4, "image_short_side": 64, "image_long_side": 112,
          "bucket_multiple": 32, "max_text_len": 16, "read_threads": 1,
          "max_skip_fraction": 0.5}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  return synthetic.generate(str(tmp_path_factory.mktemp("world")), seed=1,
                            num_images=40)


@pytest.fixture(scope="module")
def captions_with_bad_images(world, tmp_path_factory):
  captions = list(coco.read_karpathy(world["karpathy_coco"], world["coco_root"]))
  folder = tmp_path_factory.mktemp("bad")
  (folder / "empty.jpg").write_bytes(b"")
  bad = [records.ImageText("x", str(folder / name), "a blue square .", "test")
         for name in ("empty.jpg", "missing.jpg")]
  return captions[:30] + bad


def test_packed_source_answers_like_the_raw_source(captions_with_bad_images, tmp_path):
  meta = pack.pack(captions_with_bad_images, tmp_path, num_shards=3)
  raw = sources.RawSource(captions_with_bad_images)
  packed = pack.PackedSource(tmp_path)
  distinct = {c.image_path for c in captions_with_bad_images}
  assert meta["num_images"] == len(distinct) and meta["num_missing_images"] == 1
  assert len(packed) == len(raw)
  np.testing.assert_array_equal(packed.image_sizes(), raw.image_sizes())
  for index in range(len(raw) - 1):  # the last one is missing
    assert packed.record(index) == raw.record(index)
    assert packed.image_bytes(index) == raw.image_bytes(index)


@pytest.mark.parametrize("training", [True, False])
def test_packed_and_raw_pretraining_batches_are_equal(captions_with_bad_images,
                                                      tokenizer, tmp_path, training):
  pack.pack(captions_with_bad_images, tmp_path, num_shards=2)

  def batches(examples):
    iterator = pipeline.pretrain_pipeline(examples, tokenizer, CONFIG, seed=5,
                                          training=training)
    got = [next(iterator) for _ in range(iterator.batches_per_epoch)]
    return got, dict(iterator.skipped)

  raw, raw_skips = batches(captions_with_bad_images)
  packed, packed_skips = batches(pack.PackedSource(tmp_path))
  assert_same_batches(raw, packed)
  assert raw_skips == packed_skips
  if not training:
    assert raw_skips == {"empty": 1, "missing": 1}


def test_cli_packs_vqa_and_nlvr2_with_typed_records(world, tmp_path):
  pack.main(["--format", "vqa", "--questions", world["vqa_val2014_questions"],
             "--annotations", world["vqa_val2014_annotations"],
             "--images", f"{world['coco_root']}/val2014", "--out", str(tmp_path / "vqa"),
             "--num_shards", "2"])
  questions = list(vqa.read_vqa(world["vqa_val2014_questions"],
                                world["vqa_val2014_annotations"],
                                f"{world['coco_root']}/val2014"))
  packed = pack.PackedSource(tmp_path / "vqa")
  assert [packed.record(i) for i in range(len(packed))] == questions
  pack.main(["--format", "nlvr2", "--annotations", world["nlvr2_dev"],
             "--images", world["nlvr2_images"], "--out", str(tmp_path / "nlvr2")])
  pairs = list(nlvr2.read_nlvr2(world["nlvr2_dev"], world["nlvr2_images"]))
  packed = pack.PackedSource(tmp_path / "nlvr2")
  assert [packed.record(i) for i in range(len(packed))] == pairs
  assert packed.image_sizes().shape == (len(pairs), 2, 2)


def test_cli_bounds_the_skipped_annotations(world, tmp_path):
  data = load_json(world["karpathy_coco"])
  for image in data["images"][::4]:  # a quarter of the images lose a caption
    image["sentences"][0]["raw"] = ""
  annotations = tmp_path / "dataset_coco.json"
  annotations.write_text(json.dumps(data))
  args = ["--format", "karpathy", "--annotations", str(annotations),
          "--images", world["coco_root"], "--out", str(tmp_path / "packed")]
  with pytest.raises(SystemExit, match=r"(?s)FAILED: .*empty_text: \d+ \(e\.g\. COCO_"):
    pack.main(args)
  assert not (tmp_path / "packed").exists()
  pack.main(args + ["--max_skip_fraction", "0.1"])
  assert len(pack.PackedSource(tmp_path / "packed")) == len(
      list(coco.read_karpathy(annotations, world["coco_root"])))
