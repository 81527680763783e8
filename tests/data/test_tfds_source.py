"""Tests of the TFDS `coco_captions` source on a real TFDS dataset written to disk.

The dataset is written by TFDS's own `coco_captions` builder class (same features,
config "2014" and version) with its download step replaced by the synthetic world's
Karpathy file, in ArrayRecord format. The validation image is stored truncated and
one training image gets an extra blank caption, to check skips.
"""

import collections
import os
import pathlib
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.object_detection import coco_captions

from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import pipeline
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import sources
from pixelbert_jax.data import synthetic
from pixelbert_jax.data import tfds_source
from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.data.readers import coco

CONFIG = {"global_batch_size": 8, "image_short_side": 64, "image_long_side": 112,
          "bucket_multiple": 32, "max_text_len": 16, "read_threads": 1}
SPLITS = ("train", "val", "test", "restval")


class SyntheticCocoCaptions(coco_captions.CocoCaptions, skip_registration=True):
  """TFDS's `coco_captions` builder, filled from the synthetic world's files."""

  name = "coco_captions"

  def __init__(self, *, world: dict[str, str], **kwargs):
    self._world = world
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split):
    items = coco.read_karpathy_retrieval(self._world["karpathy_coco"],
                                         self._world["coco_root"], split)
    for number, item in enumerate(items):
      image = pathlib.Path(item.image_path).read_bytes()
      texts = list(item.texts)
      if split == "val":
        image = image[:len(image) // 2]
      if split == "train" and number == 0:
        texts.append("   ")
      yield item.image_id, {
          "image": image, "image/filename": os.path.basename(item.image_path),
          "image/id": int(item.image_id), "objects": [],
          "captions": [{"id": i, "text": t} for i, t in enumerate(texts)]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  return synthetic.generate(str(tmp_path_factory.mktemp("world")), seed=0,
                            num_images=16)


@pytest.fixture(scope="module")
def data_dir(world, tmp_path_factory):
  tfds.disable_progress_bar()
  directory = str(tmp_path_factory.mktemp("tfds"))
  SyntheticCocoCaptions(world=world, config="2014", data_dir=directory,
                        file_format="array_record").download_and_prepare()
  return directory


@pytest.fixture(scope="module")
def pretrain_source(data_dir):
  # One blank caption in this small set passes the default bound of 1 %.
  return tfds_source.TfdsCaptionsSource(("train", "restval"), data_dir=data_dir,
                                        num_threads=2, max_skip_fraction=0.05)


def test_the_default_bound_refuses_the_blank_caption_naming_its_image(data_dir):
  with pytest.raises(skips_lib.TooManySkipped,
                     match=r"empty_text: 1 \(e\.g\. COCO_train2014_\d+\.jpg captions\[5\]"):
    tfds_source.TfdsCaptionsSource(("train", "restval"), data_dir=data_dir,
                                   num_threads=2)


@pytest.fixture(scope="module")
def karpathy(world):
  return list(coco.read_karpathy(world["karpathy_coco"], world["coco_root"],
                                 coco.PRETRAIN_SPLITS))


def by_image(examples):
  """image id -> (file name, captions in order)."""
  grouped = collections.defaultdict(list)
  names = {}
  for example in examples:
    names[example.image_id] = os.path.basename(example.image_path)
    grouped[example.image_id].append(example.text)
  return {image_id: (names[image_id], texts) for image_id, texts in grouped.items()}


def test_examples_are_the_captions_of_the_karpathy_file(pretrain_source, karpathy):
  got = [pretrain_source.record(i) for i in range(len(pretrain_source))]
  assert len(pretrain_source) == len(karpathy)  # The blank caption is skipped.
  assert by_image(got) == by_image(karpathy)
  assert {r.source for r in got} == {"karpathy_coco"}
  for index, example in enumerate(got):
    assert pretrain_source.image_names(index) == (example.image_path,)


def test_image_bytes_decode_to_the_original_pixels(pretrain_source, karpathy):
  paths = {os.path.basename(r.image_path): r.image_path for r in karpathy}
  sizes = pretrain_source.image_sizes()
  assert sizes.shape == (len(pretrain_source), 1, 2) and sizes.dtype == np.int32
  for index in range(0, len(pretrain_source), 5):  # One caption per image.
    (data,) = pretrain_source.image_bytes(index)
    pixels = images_lib.decode_image(data)
    expected = images_lib.load_image(paths[pretrain_source.image_names(index)[0]])
    np.testing.assert_array_equal(pixels, expected)
    assert tuple(sizes[index, 0]) == pixels.shape[:2]


def test_directory_and_pickled_sources_answer_alike(pretrain_source, data_dir):
  builder_dir = os.path.join(data_dir, "coco_captions", "2014", "1.1.0")
  others = [tfds_source.TfdsCaptionsSource("train+restval", builder_dir=builder_dir,
                                           max_skip_fraction=0.05),
            pickle.loads(pickle.dumps(pretrain_source))]
  for other in others:
    assert len(other) == len(pretrain_source)
    np.testing.assert_array_equal(other.image_sizes(), pretrain_source.image_sizes())
    for index in (0, 7, len(other) - 1):
      assert other.record(index) == pretrain_source.record(index)
      assert other.image_bytes(index) == pretrain_source.image_bytes(index)


def test_pretrain_pipeline_yields_batches(pretrain_source, world):
  tokenizer = tokenizer_lib.WordPieceTokenizer.from_vocab_file(world["vocab"])
  iterator = pipeline.pretrain_pipeline(pretrain_source, tokenizer, CONFIG, seed=0,
                                        training=False)
  batches = [next(iterator) for _ in range(iterator.batches_per_epoch)]
  indices = np.concatenate([b["example_index"][b["valid"]] for b in batches])
  assert sorted(indices) == list(range(len(pretrain_source)))
  assert sum(int(b["num_skipped"]) for b in batches) == 0
  for batch in batches:
    assert batch["images"].shape[1:3] in iterator.buckets
    assert (batch["token_ids"][:, 0] == tokenizer.cls_id).all()


def test_truncated_image_is_skipped_and_counted(data_dir, world):
  source = tfds_source.TfdsCaptionsSource(("val", "test"), data_dir=data_dir,
                                          num_threads=1)
  tokenizer = tokenizer_lib.WordPieceTokenizer.from_vocab_file(world["vocab"])
  iterator = pipeline.pretrain_pipeline(source, tokenizer,
                                        {**CONFIG, "max_skip_fraction": 1.0},
                                        seed=0, training=False)
  for _ in range(iterator.batches_per_epoch):
    next(iterator)
  assert len(source) == 10 and dict(iterator.skipped) == {"truncated": 5}
  # The header survives truncation, so the planned size is still known.
  assert (source.image_sizes() > 0).all()
  assert sources.header_size(source.image_bytes(0)[0]) != (0, 0)


def test_worker_processes_give_the_same_batches(pretrain_source, world):
  tokenizer = tokenizer_lib.WordPieceTokenizer.from_vocab_file(world["vocab"])

  def take(num_workers):
    iterator = pipeline.pretrain_pipeline(pretrain_source, tokenizer,
                                          {**CONFIG, "num_workers": num_workers},
                                          seed=0)
    batches = [next(iterator) for _ in range(3)]
    iterator.close()
    return batches

  for want, got in zip(take(0), take(2)):
    for key in want:
      np.testing.assert_array_equal(want[key], got[key], err_msg=key)


def test_unprepared_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="not prepared"):
    tfds_source.TfdsCaptionsSource("test", data_dir=str(tmp_path))
