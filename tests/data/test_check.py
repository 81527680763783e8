"""Tests for the dataset checker: real worlds on disk, with and without damage."""

import json
import os
import re
import subprocess
import sys

import pytest

from pixelbert_jax.data import check
from pixelbert_jax.data import synthetic


@pytest.fixture
def world(tmp_path):
  return synthetic.generate(str(tmp_path / "world"), seed=4, num_images=20)


def _damage_images(folder):
  """Deletes one image, empties one, truncates one and overwrites one with text."""
  names = sorted(os.listdir(folder))
  os.remove(os.path.join(folder, names[0]))
  open(os.path.join(folder, names[1]), "wb").close()
  with open(os.path.join(folder, names[2]), "rb") as f:
    data = f.read()
  with open(os.path.join(folder, names[2]), "wb") as f:
    f.write(data[:len(data) // 2])
  with open(os.path.join(folder, names[3]), "wb") as f:
    f.write(b"this is not an image")


def test_clean_world_passes_and_prints_counts(world, capsys):
  assert check.main(["--format", "coco", "--root", world["coco_root"]]) == 0
  out = capsys.readouterr().out
  assert "60 of 60 examples usable" in out and "OK" in out


@pytest.mark.parametrize("args", [
    ["--format", "karpathy", "--splits", "train,restval,val,test"],
    ["--format", "vqa", "--questions", "vqa_val2014_questions",
     "--annotations", "vqa_val2014_annotations"],
    ["--format", "nlvr2", "--jsonl", "nlvr2_dev"],
    ["--format", "flickr30k", "--splits", "train,val,test"],
    ["--format", "vg"]])
def test_every_format_of_the_world_checks_clean(world, args, capsys):
  roots = {"karpathy": "coco_root", "vqa": "root", "nlvr2": "nlvr2_root",
           "flickr30k": "flickr30k_root", "vg": "vg_root"}
  args = [world.get(a, a) for a in args] + ["--root", world[roots[args[1]]]]
  if args[1] == "vqa":
    args += ["--image_dir", os.path.join(world["coco_root"], "val2014")]
  assert check.main(args) == 0
  usable, seen = re.search(r"(\d+) of (\d+) examples usable",
                           capsys.readouterr().out).groups()
  assert usable == seen and int(seen) > 0


def test_damage_is_counted_per_reason_and_fails_past_the_bound(world, capsys):
  _damage_images(os.path.join(world["coco_root"], "train2014"))
  path = world["coco_captions_train"]
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  data["annotations"][-1]["caption"] = ""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(data, f)
  assert check.main(["--format", "coco", "--root", world["coco_root"]]) == 1
  captured = capsys.readouterr()
  for reason in ("image_missing: 5", "image_empty: 5", "image_truncated: 5",
                 "image_undecodable: 5", "empty_text: 1"):
    assert reason in captured.out
  # A damaged image is named by its file, the thing to fix.
  assert re.search(r"image_missing: 5 \(e\.g\. [^)]*train2014/COCO_train2014_\d+\.jpg",
                   captured.out)
  assert "39 of 60 examples usable" in captured.out
  assert "max_skip_fraction" in captured.err
  assert check.main(["--format", "coco", "--root", world["coco_root"],
                     "--max_skip_fraction", "0.5"]) == 0


def test_nlvr2_pair_with_a_damaged_image_is_skipped(world, capsys):
  _damage_images(os.path.join(world["nlvr2_images"], "dev"))
  code = check.main(["--format", "nlvr2", "--root", world["nlvr2_root"],
                     "--jsonl", world["nlvr2_dev"], "--max_skip_fraction", "1"])
  out = capsys.readouterr().out
  assert code == 0 and "missing_image: 1" in out and "image_" in out


def test_command_line_exits_non_zero_past_the_bound(world):
  result = subprocess.run(
      [sys.executable, "-m", "pixelbert_jax.data.check", "--format", "vqa",
       "--root", os.path.dirname(world["vqa_train2014_questions"]),
       "--image_dir", os.path.join(world["coco_root"], "val2014")],
      capture_output=True, text=True, check=False)
  # The train questions point at train2014 images, which are not in val2014.
  assert result.returncode == 1, result.stderr
  assert "image_missing" in result.stdout


def test_a_file_cut_short_fails_naming_the_file(world, capsys):
  path = world["coco_captions_train"]
  with open(path, encoding="utf-8") as f:
    text = f.read()
  with open(path, "w", encoding="utf-8") as f:
    f.write(text[:len(text) // 2])
  assert check.main(["--format", "coco", "--root", world["coco_root"]]) == 1
  assert f"FAILED: {path}: not valid JSON at line 1, column" in capsys.readouterr().err
