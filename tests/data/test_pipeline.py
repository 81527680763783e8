"""Tests of the grain input pipelines on the synthetic world, written to disk once."""

import json

import numpy as np
import pytest

from conftest import assert_same_batches
from pixelbert_jax.data import answers as answers_lib
from pixelbert_jax.data import batch_plan
from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import pipeline
from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import sources
from pixelbert_jax.data import synthetic
from pixelbert_jax.data.readers import coco
from pixelbert_jax.data.readers import nlvr2
from pixelbert_jax.data.readers import vqa

# Small images, sides on a 32-pixel grid: a few buckets, fast decoding.
CONFIG = {"global_batch_size": 8, "image_short_side": 64, "image_long_side": 112,
          "bucket_multiple": 32, "max_text_len": 16, "read_threads": 1}

PRETRAIN_KEYS = {
    "images": np.uint8, "image_sizes": np.int32, "token_ids": np.int32,
    "text_mask": np.bool_, "mlm_ids": np.int32, "mlm_labels": np.int32,
    "mlm_weights": np.float32, "image_ids": np.int32, "example_index": np.int32,
    "valid": np.bool_, "num_skipped": np.int32}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  return synthetic.generate(str(tmp_path_factory.mktemp("world")), seed=0,
                            num_images=48)


@pytest.fixture(scope="module")
def captions(world):
  return list(coco.read_karpathy(world["karpathy_coco"], world["coco_root"]))


def take(iterator, count):
  return [next(iterator) for _ in range(count)]


def pretrain(captions, tokenizer, seed=0, **overrides):
  return pipeline.pretrain_pipeline(captions, tokenizer, {**CONFIG, **overrides},
                                    seed=seed)


def test_pretrain_batch_keys_dtypes_and_static_bucket_shapes(captions, tokenizer):
  iterator = pretrain(captions, tokenizer)
  for batch in take(iterator, 6):
    assert {k: v.dtype.type for k, v in batch.items()} == PRETRAIN_KEYS
    height, width = batch["images"].shape[1:3]
    assert (height, width) in iterator.buckets
    assert batch["images"].shape == (8, height, width, 3)
    assert batch["num_skipped"].shape == () and batch["valid"].all()
    for image, (h, w) in zip(batch["images"], batch["image_sizes"]):
      assert 0 < h <= height and 0 < w <= width
      assert min(h, w) == 64 or max(h, w) == 112  # the short-side / long-side rule
      assert not image[h:].any() and not image[:, w:].any()  # padding is 0
    np.testing.assert_array_equal(batch["mlm_labels"] != 0, batch["mlm_weights"] > 0)
    assert (batch["token_ids"][:, 0] == tokenizer.cls_id).all()
    for index, image_id in zip(batch["example_index"], batch["image_ids"]):
      same_image = [i for i, c in enumerate(captions)
                    if c.image_path == captions[index].image_path]
      assert len(same_image) == 5  # the synthetic world's 5 captions per image
      assert (batch["image_ids"][np.isin(batch["example_index"], same_image)]
              == image_id).all()


def test_same_seed_gives_same_batches_and_another_seed_does_not(captions, tokenizer):
  first = take(pretrain(captions, tokenizer, seed=3), 3)
  assert_same_batches(first, take(pretrain(captions, tokenizer, seed=3), 3))
  other = take(pretrain(captions, tokenizer, seed=4), 3)
  assert any(not np.array_equal(a["token_ids"], b["token_ids"])
             for a, b in zip(first, other))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_restore_mid_epoch_continues_exactly(captions, tokenizer, num_workers):
  overrides = {"num_workers": num_workers}
  iterator = pretrain(captions, tokenizer, **overrides)
  # Stop just before the epoch ends, so the continuation crosses into epoch 2.
  stop = iterator.batches_per_epoch - 1
  take(iterator, stop)
  # The trainer's checkpoint stores the state as JSON (grain's CheckpointHandler).
  state = json.loads(json.dumps(iterator.get_state()))
  uninterrupted = take(iterator, 3)
  iterator.close()
  restored = pretrain(captions, tokenizer, **overrides)
  restored.set_state(state)
  assert_same_batches(uninterrupted, take(restored, 3))
  restored.close()
  # Worker processes change where batches are made, never what they hold.
  assert_same_batches(take(pretrain(captions, tokenizer), stop + 3)[stop:],
                      uninterrupted)


def test_epochs_are_reshuffled_and_remainders_dropped(captions, tokenizer):
  iterator = pretrain(captions, tokenizer)
  per_epoch = iterator.batches_per_epoch
  assert len(captions) - 8 * len(iterator.buckets) < per_epoch * 8 <= len(captions)
  epochs = [take(iterator, per_epoch) for _ in range(2)]
  assert not all(np.array_equal(a["token_ids"], b["token_ids"])
                 for a, b in zip(*epochs))


def test_process_shards_are_disjoint_and_cover_a_one_process_run(captions, tokenizer):
  def run(process_index, process_count):
    return take(pipeline.pretrain_pipeline(
        captions, tokenizer, CONFIG, seed=1, process_index=process_index,
        process_count=process_count), 4)

  whole, first, second = run(0, 1), run(0, 2), run(1, 2)
  for full, part0, part1 in zip(whole, first, second):
    assert part0["images"].shape == part1["images"].shape == (4,) + full["images"].shape[1:]
    for key in full:
      if key != "num_skipped":
        np.testing.assert_array_equal(
            np.concatenate([part0[key], part1[key]]), full[key], err_msg=key)


def test_uneven_global_batch_is_refused(captions, tokenizer):
  with pytest.raises(ValueError, match="does not split"):
    pipeline.pretrain_pipeline(captions, tokenizer, CONFIG, seed=0, process_count=3)


def test_vqa_evaluation_pads_and_yields_every_question_once(world, tokenizer):
  questions = list(vqa.read_vqa(world["vqa_val2014_questions"],
                                world["vqa_val2014_annotations"],
                                f"{world['coco_root']}/val2014"))
  assert len(questions) % 8 != 0
  vocab = answers_lib.build_answer_vocab(questions, min_count=1)
  iterator = pipeline.vqa_pipeline(questions, tokenizer, vocab, CONFIG, seed=0,
                                   training=False)
  batches = list(iterator)
  ids = np.concatenate([b["question_id"][b["valid"]] for b in batches])
  assert sorted(ids.tolist()) == sorted(q.question_id for q in questions)
  assert sum(int((~b["valid"]).sum()) for b in batches) > 0  # padding happened
  batch = batches[0]
  assert batch["targets"].shape == (8, len(vocab)) and batch["targets"].dtype == np.float32
  assert batch["question_id"].dtype == np.int64
  assert all(int(b["num_skipped"]) == 0 for b in batches)
  assert (batch["targets"][batch["valid"]].max(axis=1) > 0).all()


def test_nlvr2_pairs_share_one_bucket(world, tokenizer):
  pairs = list(nlvr2.read_nlvr2(world["nlvr2_train"], world["nlvr2_images"]))
  iterator = pipeline.nlvr2_pipeline(pairs, tokenizer, {**CONFIG, "global_batch_size": 2},
                                     seed=0)
  batch = next(iterator)
  height, width = batch["images"].shape[2:4]
  assert batch["images"].shape == (2, 2, height, width, 3)
  assert batch["image_sizes"].shape == (2, 2, 2) and batch["label"].dtype == np.int32
  assert (batch["image_sizes"][..., 0] <= height).all()
  assert (batch["image_sizes"][..., 1] <= width).all()
  assert set(batch["label"].tolist()) <= {0, 1}


@pytest.fixture(scope="module")
def with_bad_images(captions, tmp_path_factory):
  folder = tmp_path_factory.mktemp("bad")
  (folder / "empty.jpg").write_bytes(b"")
  jpeg = open(captions[0].image_path, "rb").read()
  (folder / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])
  bad = [records.ImageText(f"bad{i}", str(folder / name), "a red circle .", "test")
         for i, name in enumerate(["empty.jpg", "truncated.jpg", "missing.jpg"])]
  return captions[:21] + bad


def test_bad_images_are_counted_with_reasons_and_marked_invalid(with_bad_images,
                                                                tokenizer):
  iterator = pipeline.pretrain_pipeline(
      with_bad_images, tokenizer, {**CONFIG, "max_skip_fraction": 0.5}, seed=0,
      training=False)
  batches = list(iterator)
  assert dict(iterator.skipped) == {"empty": 1, "truncated": 1, "missing": 1}
  assert iterator.skips.total == 3 and iterator.seen == len(with_bad_images)
  assert sum(int(b["num_skipped"]) for b in batches) == 3
  assert sum(int(b["valid"].sum()) for b in batches) == len(with_bad_images) - 3
  for batch in batches:
    assert not batch["mlm_weights"][~batch["valid"]].any()
  # Named by the image file a user can find, not by the example's index.
  assert iterator.skips.examples("missing") == [with_bad_images[-1].image_path]
  assert with_bad_images[-1].image_path in iterator.skips.summary()


def test_too_many_skipped_raises(with_bad_images, tokenizer):
  iterator = pipeline.pretrain_pipeline(
      with_bad_images, tokenizer, {**CONFIG, "max_skip_fraction": 0.01}, seed=0,
      training=False)
  with pytest.raises(skips_lib.TooManySkipped, match="missing"):
    list(iterator)


def test_header_sizes_match_decoded_images(captions):
  source = sources.RawSource(captions[:10])
  for index, size in enumerate(source.image_sizes()):
    decoded = images_lib.load_image(source.image_names(index)[0])
    assert tuple(size[0]) == decoded.shape[:2]


def test_plan_pads_evaluation_and_drops_training_remainders():
  bucket_ids = np.array([0] * 5 + [1] * 3)
  evaluation = batch_plan.BatchPlan(bucket_ids, 2, 4, seed=0, training=False)
  indices, buckets = evaluation.epoch(0)
  assert indices.shape == (3, 4) and buckets.tolist() == [0, 0, 1]
  assert sorted(indices[indices >= 0].tolist()) == list(range(8))
  training = batch_plan.BatchPlan(bucket_ids, 2, 4, seed=0, training=True)
  assert training.batches_per_epoch == 1
  assert (bucket_ids[training.epoch(0)[0]] == 0).all()


def test_evaluation_slices_of_pure_padding_keep_static_shapes(world, captions, tokenizer):
  pairs = list(nlvr2.read_nlvr2(world["nlvr2_train"], world["nlvr2_images"]))[:3]
  for build, examples in ((pipeline.pretrain_pipeline, captions[:3]),
                          (pipeline.nlvr2_pipeline, pairs)):
    first, second = (list(build(examples, tokenizer, CONFIG, seed=0, training=False,
                                process_index=i, process_count=2)) for i in (0, 1))
    assert len(first) == len(second) >= 1
    for part0, part1 in zip(first, second):
      assert {k: (v.shape, v.dtype) for k, v in part0.items()} == \
          {k: (v.shape, v.dtype) for k, v in part1.items()}
      assert not part1["valid"].any()  # positions 4-7 of at most 3 examples
    assert sum(int(b["valid"].sum()) for b in first) == len(examples)


def test_retrieval_training_pairs_each_image_with_its_caption_and_foreign_negatives(
    captions, tokenizer):
  iterator = pipeline.retrieval_train_pipeline(captions, tokenizer, CONFIG, seed=0,
                                               num_negatives=5)
  captions_of = {}
  for caption in captions:
    captions_of.setdefault(caption.image_path, set()).add(
        tuple(tokenizer.encode(caption.text, 16)[0]))
  batch = next(iterator)
  assert batch["token_ids"].shape == batch["text_mask"].shape == (8, 6, 16)
  assert batch["images"].dtype == np.uint8
  for index, token_ids in zip(batch["example_index"], batch["token_ids"]):
    own = captions_of[captions[index].image_path]
    assert tuple(token_ids[0]) == tuple(tokenizer.encode(captions[index].text, 16)[0])
    # A negative may repeat a sentence that another image also has, never this one's.
    assert not any(tuple(negative) in own for negative in token_ids[1:])
  again = next(pipeline.retrieval_train_pipeline(captions, tokenizer, CONFIG, seed=0,
                                                 num_negatives=5))
  np.testing.assert_array_equal(again["token_ids"], batch["token_ids"])


def test_image_pipeline_and_texts_cover_every_retrieval_item_once(world, tokenizer):
  items = list(coco.read_karpathy_retrieval(world["karpathy_coco"], world["coco_root"],
                                            "test"))
  assert len(items) % 8 != 0
  batches = list(pipeline.image_pipeline(items, CONFIG))
  seen = np.concatenate([b["example_index"][b["valid"]] for b in batches])
  assert sorted(seen.tolist()) == list(range(len(items)))
  assert set(batches[0]) == {"images", "image_sizes", "image_ids", "example_index",
                             "valid", "num_skipped"}
  texts = pipeline.tokenize_retrieval_texts(items, tokenizer, 16)
  assert texts["token_ids"].shape == (sum(len(i.texts) for i in items), 16)
  np.testing.assert_array_equal(
      np.bincount(texts["text_to_image"]), [len(i.texts) for i in items])
