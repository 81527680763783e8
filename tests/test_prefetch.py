"""Input read ahead of the step: same batches, exact state, errors where they belong."""

import threading

import grain
import jax
import numpy as np
import pytest

from pixelbert_jax import prefetch, sharding, train


def _batch(index: int) -> dict:
  rng = np.random.default_rng(index)
  return {"images": rng.integers(0, 255, (8, 4, 6, 3), np.uint8),
          "valid": np.ones(8, bool), "num_skipped": np.int32(0)}


def _failing_at(bad: int):
  def load(index: int) -> dict:
    if index == bad:
      raise ValueError(f"batch {index} is damaged")
    return _batch(index)
  return load


def _iterator(load=_batch, length: int = 20):
  """A real grain iterator with its own read-ahead threads, as the pipelines build it."""
  dataset = grain.MapDataset.range(length).map(load)
  return iter(dataset.to_iter_dataset(grain.ReadOptions(num_threads=2,
                                                        prefetch_buffer_size=2)))


def _to_global():
  return train.make_global(sharding.make_mesh([8, 1, 1]), sharding.DEFAULT_RULES)


def test_same_batches_placed_on_the_mesh():
  batches = prefetch.Prefetcher(_iterator(), _to_global(), depth=3)
  for index in range(5):
    host, placed = next(batches)
    np.testing.assert_array_equal(host["images"], _batch(index)["images"])
    np.testing.assert_array_equal(jax.device_get(placed["images"]), host["images"])
    assert placed["images"].sharding == sharding.batch_sharding(
        sharding.make_mesh([8, 1, 1]), sharding.DEFAULT_RULES)
    assert "num_skipped" not in placed
  batches.close()


def test_state_is_that_of_the_last_batch_handed_out():
  batches = prefetch.Prefetcher(_iterator(), _to_global(), depth=4)
  for _ in range(3):
    next(batches)
  saved = batches.get_state()  # the thread has read further ahead by now
  expected_next = next(batches)[0]
  batches.close()
  resumed = prefetch.Prefetcher(_iterator(), _to_global(), depth=4)
  resumed.set_state(saved)
  np.testing.assert_array_equal(next(resumed)[0]["images"], expected_next["images"])
  resumed.close()


def test_an_error_surfaces_at_its_batch():
  batches = prefetch.Prefetcher(_iterator(_failing_at(2)), _to_global())
  next(batches), next(batches)
  with pytest.raises(ValueError, match="batch 2 is damaged"):
    next(batches)
  batches.close()


def test_end_of_data_and_close():
  batches = prefetch.Prefetcher(_iterator(length=3), _to_global(), depth=1)
  assert len(list(batches)) == 3
  batches.close()
  stopped = prefetch.Prefetcher(_iterator(), _to_global(), depth=1)
  next(stopped)  # the thread now waits for room in the queue
  stopped.close()
  assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())


def test_state_cannot_be_set_once_reading():
  batches = prefetch.Prefetcher(_iterator(), _to_global())
  next(batches)
  with pytest.raises(RuntimeError, match="cannot be set"):
    batches.set_state(batches.get_state())
  batches.close()


def test_over_grain_worker_processes_the_state_still_resumes_exactly():
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():  # grain's workers read absl flags
    flags.FLAGS.mark_as_parsed()

  def with_workers():
    dataset = grain.MapDataset.range(20).map(_batch).to_iter_dataset()
    return iter(dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=2)))

  batches = prefetch.Prefetcher(with_workers(), _to_global(), depth=3)
  for index in range(4):
    np.testing.assert_array_equal(next(batches)[0]["images"], _batch(index)["images"])
  saved = batches.get_state()
  batches.close()
  resumed = prefetch.Prefetcher(with_workers(), _to_global(), depth=3)
  resumed.set_state(saved)
  np.testing.assert_array_equal(next(resumed)[0]["images"], _batch(4)["images"])
  resumed.close()
