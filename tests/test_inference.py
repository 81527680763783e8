"""Inference on real checkpoints: the Predictor, the attention maps and the CLI.

A module fixture runs the real trainer twice on the small synthetic world: one
pre-training step (64 / 112 px, so images fall into several buckets), then one VQA
fine-tuning step from it (64 px). The Predictor's outputs are compared with the models
run directly, on batches built by the evaluation pipeline itself where one exists, so
that inference preprocessing is checked to equal training's. Nothing asserts that the
answers are right: one step trains nothing.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from etils import epath
from flax import nnx
from PIL import Image

from conftest import REPO, override, trainer_overrides
from pixelbert_jax import attention_maps, export, predict, train
from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import data_config, pipeline
from pixelbert_jax.data.readers import nlvr2 as nlvr2_reader
from pixelbert_jax.data.readers import vqa as vqa_reader
from pixelbert_jax.inference import Predictor, UnsupportedTaskError, inputs, loading
from pixelbert_jax.tasks import nlvr2

sys.path.insert(0, REPO)
from configs import pretrain as pretrain_config  # noqa: E402
from configs import nlvr2 as nlvr2_config  # noqa: E402
from configs import vqa as vqa_config  # noqa: E402

VQA_IMAGES = {"data.image_short_side": 64, "data.image_long_side": 64}
ATOL = 1e-5



@pytest.fixture(scope="module")
def runs(small_world, tmp_path_factory) -> dict[str, epath.Path]:
  """{"pretrain", "vqa", "nlvr2"}: workdirs, each with one step's checkpoint."""
  root = epath.Path(tmp_path_factory.mktemp("inference_runs"))
  pretrain, vqa, nlvr2 = root / "pretrain", root / "vqa", root / "nlvr2"
  train.train_and_evaluate(
      override(pretrain_config.get_config("demo"), trainer_overrides(small_world, 1)),
      str(pretrain))
  # The demo's eval batch of 64 answers the 60 val questions in one call.
  overrides = {**trainer_overrides(small_world, 1), **VQA_IMAGES, "init_from": str(pretrain)}
  for unused in ("num_sampled_pixels", "eval_batches"):
    overrides.pop(unused)
  train.train_and_evaluate(override(vqa_config.get_config("demo"), overrides), str(vqa))
  overrides.update({"eval_batch_size": 8, "optimizer.groups.head.lr": 1e-3})
  train.train_and_evaluate(override(nlvr2_config.get_config("demo"), overrides),
                           str(nlvr2))
  return {"pretrain": pretrain, "vqa": vqa, "nlvr2": nlvr2}


@pytest.fixture(scope="module")
def vqa_predictor(runs) -> Predictor:
  return Predictor(runs["vqa"], batch_size=4, image_batch_size=4)


@pytest.fixture(scope="module")
def pretrain_predictor(runs) -> Predictor:
  # A step folder names the run as well as its workdir does.
  return Predictor(runs["pretrain"] / "checkpoints" / "1", batch_size=4,
                   image_batch_size=4)


@pytest.fixture(scope="module")
def val_examples(small_world) -> list:
  vqa_files = epath.Path(small_world) / "vqa"
  return list(vqa_reader.read_vqa(
      vqa_files / "v2_OpenEnded_mscoco_val2014_questions.json",
      vqa_files / "v2_mscoco_val2014_annotations.json",
      epath.Path(small_world) / "coco" / "val2014"))[:6]


def _wide_image(path: str) -> np.ndarray:
  """A 60 x 150 tiling of a world image: it goes into another bucket."""
  pixels = images_lib.load_image(path)
  return np.ascontiguousarray(np.concatenate([pixels[:60]] * 2, axis=1)[:, :150])


def _eval_batch(predictor: Predictor, examples: list) -> dict:
  """The first batch of the VQA evaluation pipeline over `examples`."""
  cfg = data_config.from_data_config(predictor.run.config.data,
                                     global_batch_size=len(examples), num_workers=0)
  iterator = pipeline.vqa_pipeline(examples, predictor.run.tokenizer,
                                   predictor.run.meta["answer_vocab"], cfg, seed=0,
                                   training=False)
  return next(iterator)


def test_answer_agrees_with_the_vqa_model(vqa_predictor, val_examples):
  batch = _eval_batch(vqa_predictor, val_examples)
  run_model = nnx.jit(lambda model, *args: model(*args))
  logits = np.asarray(run_model(vqa_predictor.run.model, batch["token_ids"],
                                batch["text_mask"], batch["images"], batch["image_sizes"]))
  rows = np.flatnonzero(batch["valid"])
  examples = [val_examples[i] for i in batch["example_index"][rows]]
  top_k = 3
  found = vqa_predictor.answer_batch([e.image_path for e in examples],
                                     [e.question for e in examples], top_k=top_k)
  answers = vqa_predictor.run.meta["answer_vocab"].answers
  for row, predicted in zip(rows, found):
    assert len(predicted) == top_k
    scores = [score for _, score in predicted]
    assert scores == sorted(scores, reverse=True)
    assert predicted[0][0] == answers[int(np.argmax(logits[row]))]
    expected = np.asarray(jax.nn.sigmoid(logits[row]))
    for answer, score in predicted:
      assert score == pytest.approx(float(expected[answers.index(answer)]), abs=ATOL)
  one = vqa_predictor.answer(examples[0].image_path, examples[0].question, top_k=top_k)
  assert [a for a, _ in one] == [a for a, _ in found[0]]
  np.testing.assert_allclose([s for _, s in one], [s for _, s in found[0]], atol=ATOL)


def test_image_inputs_agree(vqa_predictor, val_examples):
  example = val_examples[0]
  with Image.open(example.image_path) as opened:
    opened.load()
    as_path = vqa_predictor.answer(example.image_path, example.question)
    as_pil = vqa_predictor.answer(opened, example.question)
    as_array = vqa_predictor.answer(np.asarray(opened.convert("RGB")), example.question)
  assert as_path == as_pil == as_array


@nnx.jit
def _itm_probabilities(model, images, sizes, token_ids, text_mask):
  tokens, mask = model.pixelbert.encode_pixels(images, sizes)
  _, aux = model.pixelbert(token_ids, text_mask, tokens, mask)
  return jax.nn.sigmoid(model.itm_head(aux["pooled"]))


def _direct_match(predictor: Predictor, image, text: str) -> float:
  """The ITM probability of one pair, the model run directly on a batch of one."""
  images, sizes = inputs.image_batch([predictor.prepare_image(image)], 1)
  token_ids, text_mask = predictor.encode_text([text])
  return float(_itm_probabilities(predictor.run.model, images, sizes, token_ids,
                                  text_mask)[0])


def test_match_and_rank_agree_with_the_itm_head(pretrain_predictor, val_examples):
  predictor = pretrain_predictor
  paths = sorted({e.image_path for e in val_examples})[:2]
  pictures = [paths[0], paths[1], _wide_image(paths[0]), paths[0]]  # 3 distinct, 2 buckets
  text = val_examples[0].question
  texts = ["a red circle", text, "two blue squares"]
  calls = []
  encode_fn = predictor.encode_fn
  predictor.encode_fn = lambda *args: calls.append(args[1].shape) or encode_fn(*args)
  try:
    by_image = predictor.rank_images(text, pictures)
    by_text = predictor.rank_texts(pictures[2], texts)
  finally:
    predictor.encode_fn = encode_fn
  assert len(calls) == 2  # one CNN call per bucket, none again for a cached image
  assert sorted(i for i, _ in by_image) == list(range(4))
  assert [s for _, s in by_image] == sorted((s for _, s in by_image), reverse=True)
  scores = dict(by_image)
  assert scores[0] == scores[3]
  for index in range(3):
    assert scores[index] == pytest.approx(_direct_match(predictor, pictures[index], text),
                                          abs=ATOL)
  assert sorted(i for i, _ in by_text) == [0, 1, 2]
  assert [s for _, s in by_text] == sorted((s for _, s in by_text), reverse=True)
  matched = predictor.match_batch([pictures[2]] * 3, texts)
  for index, score in by_text:
    assert score == pytest.approx(matched[index], abs=ATOL)
  assert dict(by_text)[1] == pytest.approx(scores[2], abs=ATOL)


def test_attention_maps(pretrain_predictor, val_examples, tmp_path):
  image = _wide_image(val_examples[0].image_path)
  text = "a red circle"
  maps = attention_maps.attention_maps(pretrain_predictor, image, text, out_dir=tmp_path)
  _, mask = pretrain_predictor.encode_text([text])
  assert len(maps.tokens) == mask.sum() - 1 and maps.tokens[0] == "[CLS]"  # not [SEP]
  assert maps.maps.shape == (len(maps.tokens), *image.shape[:2])
  assert np.all(maps.maps >= 0) and np.all(maps.grid >= 0)
  np.testing.assert_allclose(maps.grid.sum(axis=(1, 2)), 1.0, atol=ATOL)
  stride = pretrain_predictor.model_config.pixel_stride
  prepared = pretrain_predictor.prepare_image(image)
  assert maps.grid.shape[1:] == tuple(-(-s // stride) for s in prepared.pixels.shape[:2])
  files = sorted(os.listdir(tmp_path))
  assert len(files) == len(maps.tokens) + 1 and "grid.png" in files
  for name in files:
    with Image.open(tmp_path / name) as png:
      png.verify()
  last = attention_maps.compute(pretrain_predictor, image, text, layers="last")
  np.testing.assert_allclose(last.grid.sum(axis=(1, 2)), 1.0, atol=ATOL)
  assert not np.allclose(last.grid, maps.grid)
  spec = pretrain_predictor.model_config.transformer
  every = attention_maps.compute(pretrain_predictor, image, text,
                                 layers=list(range(spec.num_layers)),
                                 heads=list(range(-spec.heads, 0)))
  np.testing.assert_array_equal(every.grid, maps.grid)
  one_head = attention_maps.compute(pretrain_predictor, image, text, heads=[1])
  assert not np.allclose(one_head.grid, maps.grid)
  with pytest.raises(ValueError, match=rf"heads \[{spec.heads}\] are not all in"):
    attention_maps.compute(pretrain_predictor, image, text, heads=[spec.heads])


def test_clear_errors(runs, pretrain_predictor, tmp_path):
  with pytest.raises(FileNotFoundError, match="no_such_run"):
    Predictor(tmp_path / "no_such_run")
  no_checkpoint = tmp_path / "no_checkpoint"
  no_checkpoint.mkdir()
  (no_checkpoint / "config.json").write_text((runs["vqa"] / "config.json").read_text())
  with pytest.raises(FileNotFoundError, match="no checkpoint found"):
    Predictor(no_checkpoint)
  garbage = tmp_path / "garbage.jpg"
  garbage.write_bytes(b"this is not a jpeg" * 10)
  with pytest.raises(images_lib.ImageError, match="garbage.jpg: undecodable"):
    pretrain_predictor.match(str(garbage), "a red circle")
  with pytest.raises(UnsupportedTaskError,
                     match=r"answer\(\) needs a VQA checkpoint.*'pretrain' task.*match"):
    pretrain_predictor.answer(str(garbage), "what colour?")
  for empty in ("", "   "):
    with pytest.raises(ValueError, match=r"text 1 \(.*\) is empty after tokenisation"):
      pretrain_predictor.encode_text(["a red circle", empty])
  with pytest.raises(ValueError, match=r"text 0 \(''\) is empty"):
    pretrain_predictor.match(os.path.join(REPO, "tests/assets/examples/scene.png"), "")


def test_a_moved_run_keeps_its_tokenizer(runs, pretrain_predictor, val_examples, tmp_path):
  """A workdir copied elsewhere, its synthetic world gone, still loads: the run kept
  a copy of its vocabulary."""
  moved = tmp_path / "moved"
  shutil.copytree(runs["pretrain"], moved)
  config = json.loads((moved / "config.json").read_text())
  config["data"]["root"] = str(tmp_path / "world_gone")
  (moved / "config.json").write_text(json.dumps(config))
  predictor = Predictor(moved, batch_size=4, image_batch_size=4)
  example, text = val_examples[0], "A large red circle."
  assert predictor.encode_text([text])[0].tolist() == (
      pretrain_predictor.encode_text([text])[0].tolist())
  assert predictor.match(example.image_path, text) == pytest.approx(
      pretrain_predictor.match(example.image_path, text), abs=ATOL)
  shutil.rmtree(moved / "tokenizer")
  with pytest.raises(FileNotFoundError, match="world_gone.*which is gone"):
    Predictor(moved)


def _cli(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "pixelbert_jax.predict", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def test_cli(runs, vqa_predictor, val_examples, tmp_path):
  example = val_examples[0]
  done = _cli(f"--workdir={runs['vqa']}", "answer", f"--image={example.image_path}",
              f"--question={example.question}", "--top_k=2")
  assert done.returncode == 0, done.stderr[-3000:]
  printed = json.loads(done.stdout)["answers"]
  expected = vqa_predictor.answer(example.image_path, example.question, top_k=2)
  assert [a["answer"] for a in printed] == [a for a, _ in expected]
  np.testing.assert_allclose([a["score"] for a in printed], [s for _, s in expected],
                             atol=ATOL)

  failed = _cli(f"--workdir={tmp_path / 'no_such_run'}", "match", "--image=x.jpg",
                "--text=a cat")
  assert failed.returncode == 1 and not failed.stdout
  assert "Traceback" not in failed.stderr
  assert failed.stderr.strip().splitlines()[-1] == (
      f"error: No such workdir or checkpoint: {tmp_path / 'no_such_run'}")


def test_cli_attention_heads(runs, val_examples, tmp_path, capsys):
  arguments = [f"--workdir={runs['pretrain']}", "attention",
               f"--image={val_examples[0].image_path}", "--text=a red circle",
               f"--out_dir={tmp_path}", "--layers=last"]
  args = predict.parser().parse_args(arguments + ["--heads=0,-1"])
  assert args.heads == [0, -1]
  result = predict.run(args)
  assert len(result["files"]) == len(result["tokens"]) + 1
  with pytest.raises(SystemExit):
    predict.parser().parse_args(arguments + ["--heads=first"])
  assert "comma-separated integers, got 'first'" in capsys.readouterr().err


def test_judge_agrees_with_the_nlvr2_model(runs, small_world, capsys):
  """judge() scores each image of the pair apart and joins their pooled vectors, as
  the NLVR2 model does on a batch of its own evaluation pipeline."""
  predictor = Predictor(runs["nlvr2"], batch_size=4, image_batch_size=4)
  world = epath.Path(small_world) / "nlvr2"
  examples = list(nlvr2_reader.read_nlvr2(world / "dev.json", world / "images"))[:4]
  cfg = data_config.from_data_config(predictor.run.config.data,
                                     global_batch_size=len(examples), num_workers=0)
  batch = next(pipeline.nlvr2_pipeline(examples, predictor.run.tokenizer, cfg, seed=0,
                                       training=False))
  logits = np.asarray(nnx.jit(nlvr2.logits)(predictor.run.model, batch))
  rows = np.flatnonzero(batch["valid"])
  chosen = [examples[i] for i in batch["example_index"][rows]]
  found = predictor.judge_batch([e.left_path for e in chosen],
                                [e.right_path for e in chosen], [e.sentence for e in chosen])
  expected = np.asarray(jax.nn.softmax(logits[rows], axis=-1)[:, 1])
  np.testing.assert_allclose(found, expected, atol=ATOL)

  first = chosen[0]
  predict.main([f"--workdir={runs['nlvr2']}", "judge", f"--left={first.left_path}",
                f"--right={first.right_path}", f"--statement={first.sentence}"])
  printed = json.loads(capsys.readouterr().out)
  assert printed["true_probability"] == pytest.approx(found[0], abs=ATOL)
  assert printed["label"] == (found[0] > 0.5)
  with pytest.raises(UnsupportedTaskError, match=r"judge\(\) needs an? NLVR2 checkpoint"):
    Predictor(runs["vqa"]).judge(first.left_path, first.right_path, first.sentence)
  with pytest.raises(UnsupportedTaskError, match=r"match\(\) needs.*'nlvr2' task.*judge"):
    predictor.match(first.left_path, first.sentence)


def _folder_bytes(folder: epath.Path) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder)
             for f in files)


def test_export_serves_like_the_run(runs, vqa_predictor, val_examples, tmp_path, capsys,
                                   monkeypatch):
  """The export answers exactly as the run does, at a fraction of its size; bfloat16
  answers nearly so; an export never overwrites."""
  out = tmp_path / "vqa_export"
  monkeypatch.chdir(tmp_path)  # a relative --out names a folder of the working directory
  export.main([f"--run={runs['vqa']}", "--out=vqa_export"])
  assert json.loads(capsys.readouterr().out)["state"].endswith("checkpoints/1/state")
  step = runs["vqa"] / "checkpoints" / "1"
  assert _folder_bytes(out) < 0.5 * _folder_bytes(step)
  example = val_examples[0]
  expected = vqa_predictor.answer(example.image_path, example.question, top_k=3)
  exported = Predictor(out, batch_size=4, image_batch_size=4)
  assert exported.answer(example.image_path, example.question, top_k=3) == expected

  half = export.export(runs["vqa"], tmp_path / "half", dtype="bfloat16")
  assert _folder_bytes(half.parent.parent.parent) < 0.7 * _folder_bytes(out)
  scores = Predictor(tmp_path / "half").answer(example.image_path, example.question, 3)
  np.testing.assert_allclose([s for _, s in scores], [s for _, s in expected], atol=0.02)
  with pytest.raises(FileExistsError, match="vqa_export exists"):
    export.export(runs["vqa"], out)
  no_tokenizer = tmp_path / "old_run"
  shutil.copytree(runs["pretrain"], no_tokenizer)
  shutil.rmtree(no_tokenizer / "tokenizer")
  with pytest.raises(FileNotFoundError, match="pass --tokenizer"):
    export.export(no_tokenizer, tmp_path / "never")
  assert not (tmp_path / "never").exists()


def test_older_configs_are_read_in_todays_form(tmp_path):
  # Before 2026-11-30 runs wrote model.vocab_size and comma-separated path lists.
  (tmp_path / "config.json").write_text(json.dumps({
      "task": "retrieval", "model": {"preset": "tiny", "vocab_size": 30522},
      "data": {"train_splits": "train, restval", "eval_split": "test",
               "train_questions": ["a.json"]}}))
  config = loading.read_config(tmp_path)
  assert "vocab_size" not in config.model
  assert tuple(config.data.train_splits) == ("train", "restval")
  assert tuple(config.data.train_questions) == ("a.json",)
  assert config.data.eval_split == "test"
