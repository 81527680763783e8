"""Tests of the Beam packer on the DirectRunner, on the synthetic world's files: its
output is `data.pack`'s (same records, images and index when nothing is dropped), read
by the pretraining pipeline and `data.check`; duplicates, Karpathy val / test images
and bad images are dropped and reported; two runs write the same bytes."""

import glob
import json
import os
import shlex
import shutil
import subprocess

import numpy as np
import pytest

from conftest import REPO, assert_same_batches, load_json
from pixelbert_jax.data import beam_pack
from pixelbert_jax.data import check
from pixelbert_jax.data import images
from pixelbert_jax.data import pack
from pixelbert_jax.data import pipeline
from pixelbert_jax.data import synthetic

CONFIG = {"global_batch_size": 4, "image_short_side": 64, "image_long_side": 112,
          "bucket_multiple": 32, "max_text_len": 16, "read_threads": 1,
          "max_skip_fraction": 0.5}
WEB_SKIPS = {"download_failed": 3, "empty_text": 1}  # the world's img2dataset corpus


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  return synthetic.generate(str(tmp_path_factory.mktemp("world")), seed=1, num_images=24)


def _index(folder) -> dict:
  with np.load(os.path.join(folder, "index.npz")) as index:
    return dict(index)


def _report(folder) -> dict:
  return load_json(os.path.join(folder, "report.json"))


def test_a_webdataset_corpus_packs_as_data_pack_packs_it(world, tokenizer, tmp_path):
  corpus = ["--format", "img2dataset", "--images", world["img2dataset"],
            "--num_shards", "3", "--max_skip_fraction", "0.5"]
  beam_pack.main(corpus + ["--out", str(tmp_path / "beam")])
  pack.main(corpus + ["--out", str(tmp_path / "pack")])
  beam, single = pack.PackedSource(tmp_path / "beam"), pack.PackedSource(tmp_path / "pack")
  assert beam.meta == single.meta and len(beam) == 20
  for name, array in _index(tmp_path / "pack").items():
    np.testing.assert_array_equal(_index(tmp_path / "beam")[name], array)
  for index in range(len(single)):
    assert beam.record(index) == single.record(index)
    assert beam.image_bytes(index) == single.image_bytes(index)
  report = _report(tmp_path / "beam")
  assert {reason: found["count"] for reason, found in report["skipped_examples"].items()
          } == WEB_SKIPS
  assert report["skipped_examples"]["download_failed"]["examples"] == [
      "000003", "000010", "000017"]
  assert report["kept_examples"] == report["kept_images"] == 20
  assert report["examples_read"] == 24 and not report["skipped_images"]
  assert report["stored_image_bytes"] == report["source_image_bytes"] > 0

  def batches(source):
    iterator = pipeline.pretrain_pipeline(source, tokenizer, CONFIG, seed=3,
                                          training=False)
    return [next(iterator) for _ in range(iterator.batches_per_epoch)]

  assert_same_batches(batches(single), batches(beam))
  assert check.main(["--format", "packed", "--root", str(tmp_path / "beam")]) == 0


@pytest.fixture(scope="module")
def doctored_karpathy(world, tmp_path_factory):
  """Karpathy's file with every split, plus three train images: a byte copy of a train
  image (one caption repeats the original's, one is new), a copy of a test image under
  another name, and an empty file."""
  folder = tmp_path_factory.mktemp("doctored")
  data = load_json(world["karpathy_coco"])
  by_split = {}
  for image in data["images"]:
    by_split.setdefault(image["split"], image)
  root = world["coco_root"]

  def add(name, like, sentences, data_bytes=None):
    path = os.path.join(root, "train2014", name)
    if data_bytes is None:
      shutil.copyfile(os.path.join(root, like["filepath"], like["filename"]), path)
    else:
      with open(path, "wb") as f:
        f.write(data_bytes)
    data["images"].append({"filepath": "train2014", "filename": name, "split": "train",
                           "cocoid": 900_000 + len(data["images"]),
                           "sentences": [{"raw": raw} for raw in sentences]})

  train, test = by_split["train"], by_split["test"]
  add("COPY_OF_TRAIN.jpg", train, [train["sentences"][0]["raw"], "a brand new caption ."])
  add("COPY_OF_TEST.jpg", test, ["a test image in disguise ."])
  add("EMPTY.jpg", train, ["an image that is not there ."], data_bytes=b"")
  path = folder / "dataset_coco.json"
  path.write_text(json.dumps(data))
  return str(path), data, train, test


def _karpathy_args(world, annotations, out, *extra):
  return ["--format", "karpathy", "--annotations", annotations, "--images",
          world["coco_root"], "--splits", "train,restval,val,test", "--out", str(out),
          "--num_shards", "4", "--exclude_karpathy", world["karpathy_coco"],
          "--karpathy_images", world["coco_root"], "--max_skip_fraction", "0.1", *extra]


def test_duplicates_karpathy_images_and_bad_images_are_dropped_and_reported(
    world, doctored_karpathy, tmp_path):
  annotations, data, train, test = doctored_karpathy
  beam_pack.main(_karpathy_args(world, annotations, tmp_path / "a", "--max_side", "40"))
  packed = pack.PackedSource(tmp_path / "a")
  got = [packed.record(i) for i in range(len(packed))]
  held_out = {str(i["cocoid"]) for i in data["images"] if i["split"] in ("val", "test")}
  assert not held_out & {r.image_id for r in got}
  assert not any("COPY_OF_TEST" in r.image_path or "EMPTY" in r.image_path for r in got)
  train_path = os.path.join(world["coco_root"], "train2014", train["filename"])
  copy = [r for r in got if "COPY_OF_TRAIN" in r.image_path]
  assert [r.text for r in copy] == ["a brand new caption ."]  # the other one repeats
  # The new caption is stored with the original's image, not with a second copy.
  first = next(i for i, r in enumerate(got) if r.image_path == train_path)
  assert packed.image_bytes(got.index(copy[0])) == packed.image_bytes(first)

  report = _report(tmp_path / "a")
  dropped = {reason: found["count"] for reason, found in report["dropped_examples"].items()}
  captions = {str(i["cocoid"]): len(i["sentences"]) for i in data["images"]}
  assert dropped == {beam_pack.EXCLUDED_KARPATHY: sum(captions[i] for i in held_out) + 1,
                     beam_pack.DUPLICATE_PAIR: 1}
  assert report["skipped_examples"] == {"image_empty": {
      "count": 1, "examples": [os.path.join(world["coco_root"], "train2014", "EMPTY.jpg")]}}
  skipped_images = {reason: found["count"]
                    for reason, found in report["skipped_images"].items()}
  assert skipped_images == {"duplicate_image": 1, beam_pack.EXCLUDED_KARPATHY: 1,
                            "image_empty": 1}
  assert report["kept_images"] == packed.meta["num_images"] == 20  # train + restval
  assert report["kept_examples"] == len(packed) == 20 * 5 + 1
  # --max_side: every image shrunk to 40 on its long side, its size in the index.
  sizes = _index(tmp_path / "a")["image_sizes"]
  assert sizes.max() == 40 and (sizes > 0).all()
  for index in range(0, len(packed), 7):
    image = images.decode_image(packed.image_bytes(index)[0])
    assert tuple(image.shape[:2]) == tuple(packed.image_sizes()[index, 0])
  assert check.main(["--format", "packed", "--root", str(tmp_path / "a")]) == 0

  # The same input again, with two worker processes: the same bytes.
  beam_pack.main(_karpathy_args(world, annotations, tmp_path / "b", "--max_side", "40",
                                "--direct_num_workers", "2",
                                "--direct_running_mode", "multi_processing"))
  names = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "a" / "*")))
  assert names == sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "b" / "*")))
  for name in names:
    if name != "report.json":  # it holds the duration
      assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_too_many_bad_images_fail_with_a_report(world, doctored_karpathy, tmp_path):
  annotations, *_ = doctored_karpathy
  args = _karpathy_args(world, annotations, tmp_path / "out")
  args[args.index("--max_skip_fraction") + 1] = "0.001"
  with pytest.raises(SystemExit, match=r"(?s)FAILED: .*image_empty: 1 \(e\.g\. .*EMPTY"):
    beam_pack.main(args)
  assert "image_empty" in _report(tmp_path / "out")["failed"]
  assert not (tmp_path / "out" / "meta.json").exists()  # not a readable pack


def test_a_file_changed_between_validation_and_writing_is_refused(tmp_path):
  """The shard writers re-read each image by path (its bytes do not travel through
  the runner); a file that changed since it was validated and hashed is an error."""
  path = tmp_path / "picture.jpg"
  path.write_bytes(b"the bytes that were validated")
  digest = beam_pack.bytes_digest(path.read_bytes())
  assert beam_pack.read_stored(str(path), digest) == b"the bytes that were validated"
  path.write_bytes(b"other bytes")
  with pytest.raises(ValueError, match=r"picture\.jpg changed while it was being packed"):
    beam_pack.read_stored(str(path), digest)


def test_the_launcher_prints_each_runner_s_command():
  script = os.path.join(REPO, "launch", "beam_pack.sh")

  def dry_run(*args):
    result = subprocess.run([script, "--dry-run", *args], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    return result.returncode, [shlex.split(line) for line in result.stdout.splitlines()]

  packer = ["--format=img2dataset", "--out=gs://b/packed it's"]
  code, (command,) = dry_run("--runner=dataflow", "--project=p", "--region=r",
                             "--temp-location=gs://b/tmp", "--workers=32", "--", *packer)
  assert code == 0 and command == [
      "python3", "-m", "pixelbert_jax.data.beam_pack", *packer, "--runner=DataflowRunner",
      "--project=p", "--region=r", "--temp_location=gs://b/tmp", "--max_num_workers=32",
      "--machine_type=n2-standard-4", "--setup_file=./setup.py"]
  code, (command,) = dry_run("--runner", "direct", "--", *packer)
  assert command[-3:] == ["--runner=DirectRunner", "--direct_num_workers=2",
                          "--direct_running_mode=multi_processing"]
  code, (command,) = dry_run("--runner=flink", "--master=jm:8081", "--workers=8",
                             "--beam-arg=--job_name=x", "--", *packer)
  assert command[-5:] == ["--runner=FlinkRunner", "--flink_master=jm:8081",
                          "--parallelism=8", "--environment_type=LOOPBACK",
                          "--job_name=x"]
  assert dry_run("--runner=dataflow", "--project=p", "--", *packer)[0] == 2
  assert dry_run("--runner=spark", "--", *packer)[0] == 2
