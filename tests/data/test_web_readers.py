"""Tests for the web corpora's readers (CC3M / CC12M, SBU, img2dataset) on the files the
synthetic world writes in their official layouts: dead urls and failed downloads are
counted skips named by a line or a key, damaged files are named, and a webdataset
corpus packs and reads back like raw files."""

import json
import os
import shutil
import tarfile

import numpy as np
import pytest

from conftest import assert_same_batches
from pixelbert_jax.data import check
from pixelbert_jax.data import images
from pixelbert_jax.data import pack
from pixelbert_jax.data import pipeline
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import sources
from pixelbert_jax.data import synthetic
from pixelbert_jax.data.readers import common
from pixelbert_jax.data.readers import conceptual_captions
from pixelbert_jax.data.readers import img2dataset
from pixelbert_jax.data.readers import sbu

# The world's web pool has 24 images; urls 3, 10 and 17 are dead (`web_formats`).
POOL, DEAD = 24, (3, 10, 17)
I2D_FORMATS = ("img2dataset", "img2dataset_files", "img2dataset_parquet")
CONFIG = {"global_batch_size": 4, "image_short_side": 64, "image_long_side": 112,
          "bucket_multiple": 32, "max_text_len": 16, "read_threads": 1,
          "max_skip_fraction": 0.5}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  return synthetic.generate(str(tmp_path_factory.mktemp("world")), seed=2, num_images=24)


def _read(reader, *args, **kwargs):
  skips = skips_lib.SkipCounter("test")
  return list(reader(*args, skips=skips, **kwargs)), skips


def _i2d_key(index: int) -> str:
  """img2dataset's key of pool image `index` with 10 samples per shard."""
  return f"{index // 10 * 10 + index % 10:06d}"


@pytest.mark.parametrize("reader,name", [(conceptual_captions.read_cc3m, "cc3m"),
                                         (conceptual_captions.read_cc12m, "cc12m")])
def test_conceptual_captions_read_the_world_and_name_dead_urls(world, reader, name):
  records, skips = _read(reader, world[f"{name}_tsv"], world[f"{name}_images"])
  tsv = os.path.basename(world[f"{name}_tsv"])
  assert len(records) == POOL - len(DEAD)
  assert skips.counts == {common.MISSING_IMAGE: len(DEAD)}
  assert skips.examples(common.MISSING_IMAGE) == [f"{tsv}:{i + 1}" for i in DEAD]
  first = records[0]
  assert first.image_path.endswith("00000/000000000.jpg") and first.source == name
  assert all(r.text == r.text.strip() and "\t" not in r.text for r in records)
  assert images.load_image(records[-1].image_path).ndim == 3


def test_cc3m_and_cc12m_give_the_same_captions_in_their_column_orders(world):
  cc3m, _ = _read(conceptual_captions.read_cc3m, world["cc3m_tsv"], world["cc3m_images"])
  cc12m, _ = _read(conceptual_captions.read_cc12m, world["cc12m_tsv"],
                   world["cc12m_images"])
  assert [r.text for r in cc3m] == [r.text for r in cc12m]
  assert len({r.text for r in cc3m}) < len(cc3m)  # web alt text repeats


def test_conceptual_captions_count_malformed_rows_and_bad_captions(world, tmp_path):
  with open(world["cc3m_tsv"], "rb") as f:
    lines = f.read().split(b"\n")[:3]
  lines += [b"no tab in this row", b"   \thttp://x.example/a.jpg",
            b"caption\thttp://x.example/b.jpg\textra", b"\xff\xfe broken\thttp://x/c.jpg",
            b"a row cut sho"]  # the file was cut short inside its last row
  tsv = tmp_path / "Train_GCC-training.tsv"
  tsv.write_bytes(b"\n".join(lines))
  # A flat layout, one pattern away: row i's image is "{i}.jpg".
  for index in range(len(lines)):
    shutil.copy(os.path.join(world["cc3m_images"], "00000", "000000000.jpg"),
                tmp_path / f"{index}.jpg")
  records, skips = _read(conceptual_captions.read_cc3m, tsv, tmp_path,
                         image_pattern="{index}.jpg")
  assert [r.image_path for r in records] == [str(tmp_path / f"{i}.jpg") for i in range(3)]
  assert skips.counts == {common.MALFORMED_ROW: 3, common.EMPTY_TEXT: 1,
                          common.BAD_ENCODING: 1}
  name = "Train_GCC-training.tsv"
  assert skips.examples(common.MALFORMED_ROW) == [f"{name}:4", f"{name}:6", f"{name}:8"]
  assert skips.examples(common.EMPTY_TEXT) == [f"{name}:5"]


def test_sbu_reads_the_world_and_names_dead_urls(world):
  records, skips = _read(sbu.read_sbu, world["sbu_urls"], world["sbu_captions"],
                         world["sbu_images"])
  assert len(records) == POOL - len(DEAD)
  assert skips.examples(common.MISSING_IMAGE) == [
      f"{sbu.URLS_FILE}:{i + 1}" for i in DEAD]
  # Each image is saved under its url's file name; the photo id is its stem.
  assert all(r.image_path.endswith(f"/{r.image_id}.jpg") for r in records)
  assert records[0].source == "sbu"


def test_sbu_files_that_are_not_line_aligned_are_named(world, tmp_path):
  captions = tmp_path / sbu.CAPTIONS_FILE
  with open(world["sbu_captions"], encoding="utf-8") as f:
    captions.write_text("".join(f.readlines()[:-2]))
  with pytest.raises(common.DataFileError, match=sbu.CAPTIONS_FILE) as error:
    _read(sbu.read_sbu, world["sbu_urls"], captions, world["sbu_images"])
  assert sbu.URLS_FILE in str(error.value) and "cut short" in str(error.value)


def test_img2dataset_output_formats_give_the_same_samples_and_skips(world):
  keys = [_i2d_key(i) for i in range(POOL)]
  found = {}
  for name in I2D_FORMATS:
    records, skips = _read(img2dataset.read_img2dataset, world[name])
    assert skips.counts == {common.DOWNLOAD_FAILED: len(DEAD), common.EMPTY_TEXT: 1}
    assert skips.examples(common.DOWNLOAD_FAILED) == [keys[i] for i in DEAD]
    assert skips.examples(common.EMPTY_TEXT) == [keys[9]]  # its alt text was empty
    found[name] = records
  webdataset, files, parquet = found.values()
  assert [(r.image_id, r.text) for r in webdataset] == [
      (r.image_id, r.text) for r in files] == [(r.image_id, r.text) for r in parquet]
  first = webdataset[0]
  assert first.image_path == images.member_path(
      os.path.join(world["img2dataset"], "00000.tar"), f"{first.image_id}.jpg")
  assert parquet[0].image_path.endswith(f"00000.parquet#{first.image_id}")
  for a, b, c in zip(webdataset, files, parquet):
    assert (images.read_image_bytes(a.image_path) == images.read_image_bytes(b.image_path)
            == images.read_image_bytes(c.image_path))


def test_img2dataset_metadata_matches_what_img2dataset_writes(world):
  with open(os.path.join(world["img2dataset"], "00000_stats.json"), "rb") as f:
    stats = json.load(f)
  assert stats["count"] == 10 and stats["successes"] == 9
  assert stats["failed_to_download"] == 1
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  table = pq.read_table(os.path.join(world["img2dataset"], "00000.parquet"))
  assert table.column_names == ["caption", "url", "key", "status", "error_message",
                                "width", "height", "original_width", "original_height",
                                "sha256"]
  assert table.column("status").to_pylist()[3] == "failed_to_download"


def test_img2dataset_without_parquet_reads_the_json_members(world, tmp_path):
  shutil.copytree(world["img2dataset_files"], tmp_path / "out",
                  ignore=shutil.ignore_patterns("*.parquet"))
  shard = tmp_path / "out" / "00000"
  (shard / "000001.jpg").unlink()
  (shard / "000002.json").write_text("{\"status\": \"succ")
  records, skips = _read(img2dataset.read_img2dataset, tmp_path / "out")
  # Failed downloads leave no files: without the parquet they are not seen at all.
  assert len(records) == POOL - len(DEAD) - 3
  assert skips.examples(common.MISSING_IMAGE) == ["000001"]
  assert skips.examples(common.BAD_JSON) == [images.member_path(shard, "000002.json")]


def test_img2dataset_files_cut_short_are_named(world, tmp_path):
  for name, suffix in (("img2dataset", ".tar"), ("img2dataset_parquet", ".parquet")):
    out = tmp_path / name
    shutil.copytree(world[name], out)
    path = out / f"00001{suffix}"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(common.DataFileError, match=f"{path}.*cut short"):
      _read(img2dataset.read_img2dataset, out)
  # Cut at a member's end, the tar parses: only its end-of-archive blocks are missing.
  tar = tmp_path / "img2dataset" / "00001.tar"
  shutil.copy(os.path.join(world["img2dataset"], "00001.tar"), tar)
  with tarfile.open(tar) as whole:
    whole.getmembers()
    end = whole.offset  # after the last member's data
  tar.write_bytes(tar.read_bytes()[:end])
  with pytest.raises(common.DataFileError, match=f"{tar}: .*cut short.*end-of-archive"):
    _read(img2dataset.read_img2dataset, tmp_path / "img2dataset")
  with pytest.raises(common.DataFileError, match="no img2dataset output"):
    _read(img2dataset.read_img2dataset, tmp_path)


def test_members_that_are_not_there_are_missing_images(world, tmp_path):
  tar = os.path.join(world["img2dataset"], "00000.tar")
  for path in (images.member_path(tar, "999999.jpg"),
               images.member_path(tmp_path / "absent.tar", "000000.jpg"),
               images.member_path(os.path.join(world["img2dataset_parquet"],
                                               "00000.parquet"), _i2d_key(3))):
    with pytest.raises(images.ImageError) as error:
      images.load_image(path)
    assert error.value.reason == "missing"
  not_a_tar = tmp_path / "text.tar"
  not_a_tar.write_text("not a tar")
  with pytest.raises(images.ImageError) as error:
    images.read_image_bytes(images.member_path(not_a_tar, "000000.jpg"))
  assert error.value.reason == "undecodable"
  assert images.split_member_path("a#b/c.jpg") == ("a#b/c.jpg", None)


def test_a_packed_webdataset_corpus_reads_back_like_its_tars(world, tokenizer, tmp_path):
  records, _ = _read(img2dataset.read_img2dataset, world["img2dataset"])
  pack.main(["--format", "img2dataset", "--images", world["img2dataset"],
             "--out", str(tmp_path), "--num_shards", "2", "--max_skip_fraction", "0.3"])
  packed, raw = pack.PackedSource(tmp_path), sources.RawSource(records)
  assert packed.meta["num_images"] == len(records) and len(packed) == len(raw)
  assert packed.meta["num_missing_images"] == 0
  np.testing.assert_array_equal(packed.image_sizes(), raw.image_sizes())
  assert (packed.image_sizes() > 0).all()  # read from the tar members' headers
  for index in range(len(raw)):
    assert packed.record(index) == raw.record(index)
    assert packed.image_bytes(index) == raw.image_bytes(index)

  def batches(source):
    iterator = pipeline.pretrain_pipeline(source, tokenizer, CONFIG, seed=3,
                                          training=False)
    return [next(iterator) for _ in range(iterator.batches_per_epoch)], iterator

  from_tars, iterator = batches(records)
  assert_same_batches(from_tars, batches(pack.PackedSource(tmp_path))[0])
  assert dict(iterator.skipped) == {}
  assert sum(int(b["valid"].sum()) for b in from_tars) == len(records)


@pytest.mark.parametrize("fmt,root,reason", [
    ("cc3m", "cc3m_tsv", common.MISSING_IMAGE),
    ("cc12m", "cc12m_tsv", common.MISSING_IMAGE),
    ("sbu", "sbu_urls", common.MISSING_IMAGE),
    ("img2dataset", "img2dataset", common.DOWNLOAD_FAILED)])
def test_check_prints_the_counted_skips_of_each_web_format(world, capsys, fmt, root,
                                                           reason):
  folder = world[root] if fmt == "img2dataset" else os.path.dirname(world[root])
  args = ["--format", fmt, "--root", folder]
  assert check.main(args + ["--max_skip_fraction", "0.3"]) == 0
  out = capsys.readouterr().out
  usable = POOL - len(DEAD) - (fmt == "img2dataset")
  assert f"{usable} of {POOL} examples usable" in out
  assert f"  {reason}: {len(DEAD)} (e.g. " in out
  assert check.main(args) == 1  # dead urls pass the curated data sets' bound


def test_an_image_pattern_with_unknown_fields_is_refused_before_reading(world):
  with pytest.raises(ValueError, match="{index}, {shard} and {url_name}"):
    _read(conceptual_captions.read_cc3m, world["cc3m_tsv"], world["cc3m_images"],
          image_pattern="{row:09d}.jpg")
