"""The task protocol: tasks found by name, what each offers inference, real-data errors,
and reading: a copied world reads the copy, every task bounds its readers' skips."""

import importlib
import json
import logging
import shutil

from etils import epath
import pytest

from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import common as readers_common
from pixelbert_jax.data.synthetic import cache
from pixelbert_jax.tasks import base as tasks
from pixelbert_jax.tasks import common
from pixelbert_jax.tasks import pretrain

# (config module, the error a real-data config without its paths gives).
REAL_DATA_ERRORS = [
    ("vqa", "train_questions and train_images are required"),
    ("nlvr2", "train_file, eval_file and images are required"),
    ("retrieval", "karpathy_json and images are required"),
    ("snli_ve", "train_file, eval_file and images are required"),
]


def test_tasks_are_found_by_name_and_only_by_name():
  names = tasks.task_names()
  assert {"pretrain", "vqa", "nlvr2", "retrieval"} <= set(names)
  for name in names:
    task_class = tasks.task_class(name)
    assert task_class.name == name and task_class.checkpoint_kind
  with pytest.raises(ValueError, match="Unknown task 'nope'.*vqa"):
    tasks.task_class("nope")
  with pytest.raises(ValueError, match="Unknown task 'common'"):
    tasks.task_class("common")  # a module of the package, but no task


def test_commands_come_from_the_tasks_that_serve_them():
  commands = tasks.commands()
  assert {"answer", "match", "rank", "judge"} <= set(commands)
  for name in tasks.task_names():
    for capability in tasks.task_class(name).capabilities:
      for command in capability.commands:
        assert commands[command.name].help == command.help


@pytest.mark.parametrize("config_name, message", REAL_DATA_ERRORS)
def test_real_data_needs_its_paths(small_world, tmp_path, config_name, message):
  config = importlib.import_module(f"configs.{config_name}").get_config()
  config.data.tokenizer = f"wordpiece:{small_world}/vocab.txt"
  with pytest.raises(ValueError, match=message):
    tasks.get(config).make_data(str(tmp_path))


# Per task, its training text in the synthetic world: (file, the text field).
TRAINING_TEXT = {
    "pretrain": ("coco/dataset_coco.json", "raw"),
    "retrieval": ("flickr30k/dataset_flickr30k.json", "raw"),  # the demo's data set
    "vqa": ("vqa/v2_OpenEnded_mscoco_train2014_questions.json", "question"),
    "nlvr2": ("nlvr2/train.json", "sentence"),
    "snli_ve": ("snli_ve/snli_ve_train.jsonl", "sentence2"),
}


def _copy_world(small_world, tmp_path) -> epath.Path:
  copy = tmp_path / "copy"
  shutil.copytree(small_world, copy)
  return epath.Path(copy)


def _blank(value, field: str, every: int, count: list) -> None:
  """Blanks the text `field` of every `every`-th entry found in a JSON value (the
  first included), as an annotator's empty caption would be; counts them in `count`."""
  if isinstance(value, list):
    for item in value:
      _blank(item, field, every, count)
  elif isinstance(value, dict):
    if isinstance(value.get(field), str):
      if count[1] % every == 0:
        value[field], count[0] = "", count[0] + 1
      count[1] += 1
    for item in value.values():
      _blank(item, field, every, count)


def _blank_texts(path: epath.Path, field: str, every: int) -> int:
  """Blanks every `every`-th text `field` of a JSON or JSON-lines file; how many."""
  count, lines = [0, 0], path.read_text().splitlines()
  if len(lines) == 1:  # one JSON document
    data = json.loads(lines[0])
    _blank(data, field, every, count)
    path.write_text(json.dumps(data))
  else:  # JSON lines (NLVR2's train.json is one too)
    entries = [json.loads(line) for line in lines]
    _blank(entries, field, every, count)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
  return count[0]


def _demo_config(name: str, root: epath.Path):
  config = importlib.import_module(f"configs.{name}").get_config("demo")
  config.data.root, config.data.synthetic_num_images = str(root), 48
  return config


def test_a_copied_world_reads_the_copy_not_the_original(small_world, tmp_path):
  copy = _copy_world(small_world, tmp_path)
  config = _demo_config("pretrain", copy)
  world = common.world_or_none(config.data, str(tmp_path))
  assert all(path.startswith(str(copy)) for path in world.values()), world
  karpathy = copy / "coco" / "dataset_coco.json"
  _blank_texts(karpathy, "raw", every=5)
  with pytest.raises(skips_lib.TooManySkipped, match="empty_text"):
    pretrain.read_examples(config.data, world)
  karpathy.write_text(karpathy.read_text()[:5000])  # cut short, as a failed copy is
  with pytest.raises(readers_common.DataFileError, match=f"{karpathy}: not valid JSON"):
    pretrain.read_examples(config.data, world)
  # The original is untouched and still reads.
  original = _demo_config("pretrain", epath.Path(small_world)).data
  assert pretrain.read_examples(original, cache.read_marker(small_world))[0]


def test_an_old_marker_of_absolute_paths_reads_under_its_copy(small_world, tmp_path):
  copy = _copy_world(small_world, tmp_path)
  relative = (copy / cache.WORLD_MARKER).read_text().splitlines()
  assert relative and not any(line.split("\t")[1].startswith("/") for line in relative)
  # A marker as worlds wrote it before: absolute paths under the folder it was made in.
  (copy / cache.WORLD_MARKER).write_text("".join(
      f"{name}\t{epath.Path(small_world) / path}\n"
      for name, path in (line.split("\t") for line in relative)))
  world = cache.read_marker(copy)
  assert world["root"] == str(copy)
  assert world["karpathy_coco"] == str(copy / "coco" / "dataset_coco.json")


@pytest.mark.parametrize("name", sorted(TRAINING_TEXT))
def test_every_task_refuses_a_copy_past_its_skip_bound(small_world, tmp_path, name):
  copy = _copy_world(small_world, tmp_path)
  file, field = TRAINING_TEXT[name]
  assert _blank_texts(copy / file, field, every=5)
  with pytest.raises(skips_lib.TooManySkipped,
                     match=r"(?s)empty_text: \d+ \(e\.g\. .*max_skip_fraction=0\.01"):
    tasks.get(_demo_config(name, copy)).make_data(str(tmp_path / "workdir"))


def test_pretraining_refuses_5_percent_empty_captions_and_counts_fewer(
    small_world, tmp_path, caplog):
  copy = _copy_world(small_world, tmp_path)
  config = _demo_config("pretrain", copy)
  world = common.world_or_none(config.data, str(tmp_path))
  clean = [len(split) for split in pretrain.read_examples(config.data, world)]
  blanked = _blank_texts(copy / "coco" / "dataset_coco.json", "raw", every=20)
  with pytest.raises(skips_lib.TooManySkipped) as refused:
    pretrain.read_examples(config.data, world)
  # Named by the image file and the caption's place, which a user can look up.
  assert "COCO_train2014_" in str(refused.value) and "sentences[0]" in str(refused.value)
  config.data.max_skip_fraction = 0.1
  # On absl's own logger: an earlier test in the same worker may have lowered absl's
  # verbosity, which the root logger's level does not override.
  with caplog.at_level(logging.INFO, logger="absl"):
    train, held_out = pretrain.read_examples(config.data, world)
  # The test split is not read for pre-training: its blanked captions are not counted.
  skipped = sum(clean) - len(train) - len(held_out)
  assert 0 < skipped <= blanked
  assert f"'empty_text': {skipped}" in caplog.text
