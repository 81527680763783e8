"""Visual entailment (SNLI-VE): the reader on official-format files, the synthetic set's
labels needing the image, and fine-tuning, evaluation and `entail` through the entry
point from a tiny pre-training run."""

import collections
import json
import subprocess
import sys

import numpy as np
import pytest
from etils import epath
from flax import nnx

from conftest import (REPO, SMALL_IMAGES, TINY_TRANSFORMER, pretrain_tiny, run_main,
                      scalars)
from pixelbert_jax.data import data_config
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import snli_ve as snli_ve_reader
from pixelbert_jax.data.synthetic import cache
from pixelbert_jax.inference import Predictor
from pixelbert_jax.tasks import snli_ve

STEPS = 2


def _entry(pair_id, image, hypothesis, label):
  return {"pairID": pair_id, "Flickr30K_ID": image, "sentence1": "A caption.",
          "sentence2": hypothesis, "gold_label": label, "annotator_labels": [label]}


def test_reader_takes_the_official_lines_and_names_what_it_skips(small_world, tmp_path):
  images = epath.Path(small_world) / "flickr30k" / "flickr30k-images"
  first = sorted(p.stem for p in images.glob("*.jpg"))[0]
  lines = [_entry("a#0r1e", first, "There is a red star.", "entailment"),
           _entry("a#0r1n", first, "Both images contain a red star.", "neutral"),
           _entry("a#0r1c", first, "There is a blue circle.", "contradiction"),
           _entry("b#0r1x", first, "There is a star.", "-"),  # no gold label
           _entry("c#0r1e", "404", "There is a star.", "entailment"),  # no image
           {"pairID": "d#0r1e", "Flickr30K_ID": first, "gold_label": "entailment"}]
  path = tmp_path / "snli_ve_dev.jsonl"
  path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "{not json\n")
  skips = skips_lib.SkipCounter("snli_ve-test")
  examples = list(snli_ve_reader.read_snli_ve(path, images, skips=skips))
  assert [(e.identifier, e.label) for e in examples] == [
      ("a#0r1e", 0), ("a#0r1n", 1), ("a#0r1c", 2)]
  assert examples[0].image_path == str(images / f"{first}.jpg")
  assert skips.counts == {"bad_label": 1, "missing_image": 1, "missing_field": 1,
                          "bad_json": 1}
  assert snli_ve_reader.identifiers(path) == [line["pairID"] for line in lines]


def test_synthetic_labels_need_the_image(small_world):
  # Every hypothesis template is true of some scenes and false of others: the text
  # tells at most which two labels are possible; the image decides.
  world = cache.read_marker(small_world)
  entries = [json.loads(line) for split in ("train", "dev", "test")
             for line in epath.Path(world[f"snli_ve_{split}"]).read_text().splitlines()]
  by_template = collections.defaultdict(collections.Counter)
  for entry in entries:
    template = "both" if entry["sentence2"].startswith("Both") else "there is"
    by_template[template][entry["gold_label"]] += 1
  assert by_template["there is"].keys() == {"entailment", "contradiction"}
  assert by_template["both"].keys() == {"neutral", "contradiction"}
  for counts in by_template.values():
    assert max(counts.values()) == sum(counts.values()) / 2  # text alone: a coin flip
  labels = collections.Counter(e["gold_label"] for e in entries)
  assert labels["contradiction"] == 2 * labels["entailment"] == 2 * labels["neutral"]
  # Four hypotheses per image, one image per Flickr30K file.
  assert len({e["Flickr30K_ID"] for e in entries}) == len(entries) // 4


def _overrides(world: str, init: str) -> dict:
  return {**TINY_TRANSFORMER, "init": "", "init_from": init, "data.root": world,
          "data.synthetic_num_images": 48, **SMALL_IMAGES, "global_batch_size": 8,
          "eval_batch_size": 8, "num_train_steps": STEPS, "log_every_steps": 1,
          "optimizer.warmup_steps": 0}


def test_finetune_evaluate_and_entail_through_the_entry_point(small_world, tmp_path):
  pretrained, finetuned = tmp_path / "pretrain", tmp_path / "snli_ve"
  pretrain_tiny(small_world, str(pretrained))
  run_main("configs/snli_ve.py:demo", finetuned, _overrides(small_world, pretrained))
  assert len(scalars(finetuned, "snli_ve_loss")) == STEPS
  results = json.loads((finetuned / "final_eval.json").read_text())
  for name in ("accuracy", "loss", *(f"accuracy_{label}" for label in snli_ve.LABELS)):
    assert np.isfinite(results[f"snli_ve/{name}"]), name
  _check_evaluation_counts(finetuned, small_world, results)
  _check_entail(finetuned, small_world)


def _check_evaluation_counts(workdir, world, results) -> None:
  """The accuracy is the mean over every dev example (the last batch padded): the
  per-class accuracies, weighted by the classes' counts, give it back."""
  dev = [json.loads(line) for line in
         (epath.Path(world) / "snli_ve" / "snli_ve_dev.jsonl").read_text().splitlines()]
  counts = collections.Counter(e["gold_label"] for e in dev)
  assert len(dev) % 8  # the last evaluation batch is padded
  weighted = sum(counts[label] * results[f"snli_ve/accuracy_{label}"]
                 for label in snli_ve.LABELS) / len(dev)
  assert weighted == pytest.approx(results["snli_ve/accuracy"])
  del workdir


def _check_entail(workdir, world) -> None:
  """`entail` agrees with the model on an evaluation batch, and the CLI prints it."""
  predictor = Predictor(workdir, batch_size=4, image_batch_size=4)
  examples = list(snli_ve_reader.read_snli_ve(
      epath.Path(world) / "snli_ve" / "snli_ve_dev.jsonl",
      epath.Path(world) / "flickr30k" / "flickr30k-images"))[:4]
  cfg = data_config.from_data_config(predictor.run.config.data,
                                     global_batch_size=4, num_workers=0)
  batch = next(snli_ve._pipeline(examples, predictor.run.tokenizer, cfg, seed=0,
                                 training=False))
  logits = np.asarray(nnx.jit(snli_ve._logits)(predictor.run.model, batch))
  found = predictor.entail_batch([e.image_path for e in examples],
                                 [e.hypothesis for e in examples])
  expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  for row, probabilities in zip(expected, found):
    np.testing.assert_allclose([probabilities[label] for label in snli_ve.LABELS], row,
                               atol=2e-4)
  assert isinstance(predictor.run.task, snli_ve.Task)
  done = subprocess.run(
      [sys.executable, "-m", "pixelbert_jax.predict", f"--workdir={workdir}", "entail",
       f"--image={examples[0].image_path}", f"--hypothesis={examples[0].hypothesis}"],
      cwd=REPO, capture_output=True, text=True, check=True)
  printed = json.loads(done.stdout)
  assert printed["label"] in snli_ve.LABELS
  assert printed["probabilities"] == pytest.approx(found[0], abs=1e-5)
