"""Mixtures of pre-training sources (`data.mixture`) on the small synthetic world: the
COCO-style captions, VG phrases and the CC3M-style web corpus with its dead urls."""

import dataclasses
import json

import numpy as np
import pytest

from conftest import (SMALL_IMAGES, assert_same_batches, override, scalars,
                      trainer_overrides)
from configs import pretrain as pretrain_config
from pixelbert_jax import preflight
from pixelbert_jax import train
from pixelbert_jax.data import batch_plan
from pixelbert_jax.data import mixture
from pixelbert_jax.data import pack
from pixelbert_jax.data import pipeline
from pixelbert_jax.data import preprocess
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import sources
from pixelbert_jax.data.synthetic import cache
from pixelbert_jax.tasks import pretrain

CONFIG = {"global_batch_size": 8, "image_short_side": 64, "image_long_side": 112,
          "bucket_multiple": 32, "max_text_len": 16, "read_threads": 1}


@pytest.fixture(scope="module")
def world(small_world):
  return cache.read_marker(small_world)


def _data_cfg(small_world, **weights):
  """`:demo_mixture`'s data on the small world, with some sources' weights changed."""
  data = pretrain_config.get_config("demo_mixture").data
  data.update(root=small_world, synthetic_num_images=48)
  for name, weight in weights.items():
    data.mixture[name].weight = weight
  return data


@pytest.fixture(scope="module")
def mixed(small_world, world):
  return pretrain.read_examples(_data_cfg(small_world), world)[0]


def _pipeline(source, tokenizer, seed=0, **kwargs):
  return pipeline.pretrain_pipeline(source, tokenizer, CONFIG, seed=seed, **kwargs)


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _sources_of(source, batches):
  names = [spec.name for spec in source.specs]
  return [names[s] for b in batches for s in source.source_of(b["example_index"])]


@pytest.mark.parametrize("weights", [{}, {"coco": 0.1, "vg": 0.1, "cc3m": 0.8}])
def test_realised_rates_follow_the_weights(small_world, world, tokenizer, weights):
  source = pretrain.read_examples(_data_cfg(small_world, **weights), world)[0]
  iterator = _pipeline(source, tokenizer)
  plan = iterator.plan
  wanted = np.array([s.weight for s in source.specs])
  wanted /= wanted.sum()
  rates = np.mean([plan.source_rates(epoch) for epoch in range(20)], axis=0)
  np.testing.assert_allclose(rates, wanted, atol=0.03)
  # An epoch is as long as the sources together; each source is drawn on, pass after
  # pass, so over 20 epochs every example comes up, but for those of a bucket too
  # rare to fill a batch (dropped as remainders, as without a mixture).
  assert plan.batches_per_epoch * 8 <= len(source)
  buckets = batch_plan.assign_buckets(source.image_sizes(), 64, 112, iterator.buckets)
  batched = np.isin(buckets, plan.epoch(0)[1])
  assert batched.mean() > 0.95
  seen = np.unique(np.concatenate([plan.epoch(e)[0].ravel() for e in range(20)]))
  np.testing.assert_array_equal(seen, np.flatnonzero(batched))
  # A source drawn below its size takes other examples each epoch, not one subset.
  coco = [s.name for s in source.specs].index("coco")
  draws = [set(plan.epoch(e)[0].ravel()) & set(range(*source.offsets[coco:coco + 2]))
           for e in range(2)]
  assert draws[0] != draws[1]


def test_batches_hold_every_source_and_its_records(mixed, tokenizer):
  batches = _take(_pipeline(mixed, tokenizer), 12)
  names = _sources_of(mixed, batches)
  assert set(names) == {"cc3m", "coco", "vg"}
  for batch in batches:
    for index, image_id in zip(batch["example_index"], batch["image_ids"]):
      record = mixed.record(int(index))
      assert {"cc3m": "cc3m", "coco": "karpathy_coco", "vg": "vg"}[
          mixed.specs[mixed.source_of(index)].name] == record.source
      assert image_id == preprocess.image_id_number(record.image_path)


def test_same_seed_same_mixture_another_seed_another(mixed, tokenizer):
  first = _take(_pipeline(mixed, tokenizer, seed=5), 3)
  assert_same_batches(first, _take(_pipeline(mixed, tokenizer, seed=5), 3))
  other = _pipeline(mixed, tokenizer, seed=6)
  assert not np.array_equal(other.plan.epoch(0)[0],
                            _pipeline(mixed, tokenizer, seed=5).plan.epoch(0)[0])
  assert any(not np.array_equal(a["example_index"], b["example_index"])
             for a, b in zip(first, _take(other, 3)))


def test_process_slices_are_disjoint_and_cover_the_global_batch(mixed, tokenizer):
  def run(process_index, process_count):
    return _take(_pipeline(mixed, tokenizer, seed=1, process_index=process_index,
                           process_count=process_count), 4)

  whole, first, second = run(0, 1), run(0, 2), run(1, 2)
  for full, part0, part1 in zip(whole, first, second):
    # Positions 0-3 and 4-7 of each global batch, in order: disjoint, covering. (The
    # same example may fill two slots: a small source at a high rate repeats.)
    assert len(part0["valid"]) == len(part1["valid"]) == 4
    for key in full:
      if key != "num_skipped":
        np.testing.assert_array_equal(np.concatenate([part0[key], part1[key]]),
                                      full[key], err_msg=key)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_restore_mid_epoch_continues_exactly(mixed, tokenizer, num_workers):
  workers = {"num_workers": num_workers}
  iterator = pipeline.pretrain_pipeline(mixed, tokenizer, {**CONFIG, **workers}, seed=0)
  stop = iterator.batches_per_epoch - 1  # the continuation crosses into epoch 2
  _take(iterator, stop)
  state = json.loads(json.dumps(iterator.get_state()))  # as the checkpoint keeps it
  uninterrupted = _take(iterator, 3)
  iterator.close()
  restored = pipeline.pretrain_pipeline(mixed, tokenizer, {**CONFIG, **workers}, seed=0)
  restored.set_state(state)
  assert_same_batches(uninterrupted, _take(restored, 3))
  assert restored.get_state()["groups"]["seen"] == {
      name: count + sum(name == n for n in _sources_of(mixed, uninterrupted))
      for name, count in state["groups"]["seen"].items()}
  restored.close()
  assert_same_batches(_take(_pipeline(mixed, tokenizer), stop + 3)[stop:], uninterrupted)


def test_each_source_has_its_own_skip_bound(small_world, world):
  # The web corpus loses 3 of its 24 rows to dead urls: past COCO's bound (1 %), within
  # its own (25 %); at 5 % it stops the run, naming the source.
  data = _data_cfg(small_world)
  assert data.max_skip_fraction == 0.01 and data.mixture.cc3m.max_skip_fraction == 0.25
  pretrain.read_examples(data, world)
  data.mixture.cc3m.max_skip_fraction = 0.05
  with pytest.raises(skips_lib.TooManySkipped, match="pretrain-cc3m"):
    pretrain.read_examples(data, world)
  data.mixture.cc3m.max_skip_fraction = None  # None: the data-wide bound
  with pytest.raises(skips_lib.TooManySkipped, match="pretrain-cc3m"):
    pretrain.read_examples(data, world)


def test_images_that_fail_to_load_are_bounded_per_source(mixed, tokenizer, tmp_path):
  # A third of the web corpus's images are broken: about 10 % of all examples, past
  # the data-wide bound (1 %), within the web corpus's own bound (50 %) but not 20 %.
  bad = tmp_path / "bad.jpg"
  bad.write_bytes(b"not a jpeg")
  web = [spec.name for spec in mixed.specs].index("cc3m")
  raw = mixed.parts[web]
  broken = sources.RawSource([
      dataclasses.replace(raw.record(i), image_path=str(bad)) if i % 3 == 0
      else raw.record(i) for i in range(len(raw))])

  def run(bound):
    specs = [dataclasses.replace(s, max_skip_fraction=bound) if s.name == "cc3m" else s
             for s in mixed.specs]
    parts = [broken if i == web else part for i, part in enumerate(mixed.parts)]
    iterator = pipeline.pretrain_pipeline(mixture.MixtureSource(specs, parts), tokenizer,
                                          {**CONFIG, "skip_min_seen": 10}, seed=0)
    _take(iterator, iterator.batches_per_epoch)
    return iterator.get_state()["groups"]

  groups = run(0.5)
  assert groups["skipped"]["cc3m"] > 0.2 * groups["seen"]["cc3m"]
  assert groups["skipped"]["coco"] == groups["skipped"]["vg"] == 0
  with pytest.raises(skips_lib.TooManySkipped, match="of source cc3m"):
    run(0.2)


@pytest.mark.parametrize("change, message", [
    ({"cc3m.format": "cc4m"}, "use one of"),
    ({"cc3m.paths": ("cc3m_tsv",)}, "takes"),
    ({"cc3m.paths": ("cc3m_tsv", "no_such_file")}, "not files of the synthetic"),
    ({"cc3m.weight": 0.0}, "must be positive"),
])
def test_a_wrong_source_is_named(small_world, world, change, message):
  data = _data_cfg(small_world)
  override(data.mixture, change)
  with pytest.raises(ValueError, match=message):
    pretrain.read_examples(data, world)


def test_a_mixture_without_coco_is_refused(small_world, world):
  # COCO's Karpathy file says which VG images to leave out (its test images) and
  # its val split is the held-out set.
  data = _data_cfg(small_world)
  del data.mixture["coco"]
  with pytest.raises(ValueError, match="needs a karpathy source"):
    pretrain.read_examples(data, world)
  vg = mixture.specs_from_config(data.mixture, world, 0.01)[-1]
  with pytest.raises(ValueError, match="vg source needs a karpathy source"):
    mixture.reader(vg, None)


def test_a_packed_source_mixes_like_its_files(mixed, tokenizer, tmp_path):
  cc3m = mixed.specs.index(next(s for s in mixed.specs if s.name == "cc3m"))
  raw = mixed.parts[cc3m]
  pack.pack([raw.record(i) for i in range(len(raw))], tmp_path / "cc3m", 2)
  packed_spec = mixture.SourceSpec("cc3m", "packed", (str(tmp_path / "cc3m"),), 0.3,
                                   0.25)
  specs = list(mixed.specs)
  specs[cc3m] = packed_spec
  parts = list(mixed.parts)
  parts[cc3m] = mixture.open_source(packed_spec, None)
  packed = mixture.MixtureSource(specs, parts)
  assert_same_batches(_take(_pipeline(mixed, tokenizer), 4),
                      _take(_pipeline(packed, tokenizer), 4))


def test_few_steps_of_the_mixture_demo(small_world, tmp_path):
  config = override(pretrain_config.get_config("demo_mixture"),
                    {**trainer_overrides(small_world, 3), **SMALL_IMAGES})
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  losses = scalars(tmp_path / "run", "training_loss")
  assert len(losses) == 3 and np.isfinite(losses).all()
  assert 0.0 <= results["eval/mlm_accuracy"] <= 1.0


def test_preflight_names_every_unset_or_missing_mixture_path(small_world, tmp_path):
  config = pretrain_config.get_config("cc")
  config.data.tokenizer = f"wordpiece:{small_world}/vocab.txt"
  config.data.mixture.cc3m.paths = (str(tmp_path / "no.tsv"), small_world)
  found = preflight.problems(config, str(tmp_path / "run"))
  assert found == [
      f"config.data.mixture.cc3m.paths[0]={tmp_path / 'no.tsv'}: does not exist",
      "config.data.mixture.coco.paths[0] (dataset_coco.json): not set",
      "config.data.mixture.coco.paths[1] (COCO image folder (train2014/, val2014/)): "
      "not set",
      "config.data.mixture.vg.paths[0] (region_descriptions.json): not set",
      "config.data.mixture.vg.paths[1] (image_data.json): not set",
      "config.data.mixture.vg.paths[2] (VG image folder): not set"]
