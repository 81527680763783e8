"""Tests for the skip counter: counts per reason, summaries and the bound."""

import pytest

from pixelbert_jax.data import skips as skips_lib


def test_counts_reasons_and_keeps_a_few_ids():
  skips = skips_lib.SkipCounter("t", examples_per_reason=2)
  for i in range(5):
    skips.skip("missing_image", f"id{i}")
  skips.skip("empty_text", 7, "caption is ''")
  assert skips.total == 6
  assert skips.counts == {"missing_image": 5, "empty_text": 1}
  assert skips.examples("missing_image") == ["id0", "id1"]
  assert skips.examples("empty_text") == ["7"]
  summary = skips.summary(100)
  assert "skipped 6 of 100" in summary
  assert "missing_image: 5 (e.g. id0, id1)" in summary


def test_every_skip_is_logged(caplog):
  skips = skips_lib.SkipCounter("captions")
  with caplog.at_level("WARNING"):
    skips.skip("bad_encoding", "a17", "not UTF-8")
  assert "a17" in caplog.text and "bad_encoding" in caplog.text


def test_a_frequent_reason_logs_its_first_skips_then_counts_at_powers_of_ten(caplog):
  skips = skips_lib.SkipCounter("cc3m", logged_per_reason=3)
  with caplog.at_level("WARNING"):
    for i in range(1000):
      skips.skip("missing_image", f"row{i}")
    skips.skip("empty_text", "row1000")
  lines = caplog.text.splitlines()
  assert sum("skipping row" in line for line in lines) == 4  # 3 + empty_text's first
  assert "skipping row3 " not in caplog.text
  assert "further missing_image skips are counted" in caplog.text
  running_counts = [line for line in lines if "so far" in line]
  assert [line.split(": ")[-1].split()[0] for line in running_counts] == [
      "10", "100", "1000"]
  assert "1000 examples skipped so far for missing_image (latest row999)" in caplog.text
  assert skips.counts == {"missing_image": 1000, "empty_text": 1}


def test_check_raises_past_the_bound_with_a_summary():
  skips = skips_lib.SkipCounter("vqa", max_skip_fraction=0.1, min_seen=10)
  for i in range(3):
    skips.skip("missing_annotation", i)
  skips.check(30)  # 10 % is at the bound, not past it.
  with pytest.raises(skips_lib.TooManySkipped, match="missing_annotation: 3"):
    skips.check(29)


def test_bound_waits_for_min_seen_unless_final():
  skips = skips_lib.SkipCounter(max_skip_fraction=0.01, min_seen=100)
  skips.skip("missing_field", "x")
  skips.check(5)  # Too early to judge a 20 % share.
  with pytest.raises(skips_lib.TooManySkipped):
    skips.check(5, final=True)


def test_merge_adds_counts_from_another_counter():
  a, b = skips_lib.SkipCounter(), skips_lib.SkipCounter()
  a.skip("empty_text", 1)
  b.skip("empty_text", 2)
  b.skip("bad_json", 3)
  a.merge(b)
  assert a.counts == {"empty_text": 2, "bad_json": 1}
  assert a.examples("empty_text") == ["1", "2"]


def test_rejects_a_bound_outside_zero_one():
  with pytest.raises(ValueError):
    skips_lib.SkipCounter(max_skip_fraction=1.5)
