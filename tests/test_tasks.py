"""The task protocol: tasks found by name, what each offers inference, real-data errors."""

import importlib

import pytest

from pixelbert_jax.tasks import base as tasks

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
