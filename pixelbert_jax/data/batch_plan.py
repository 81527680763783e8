"""Bucketed batch plans: which examples form each batch, decided before any decoding.

Every batch holds examples of ONE image bucket, so the jitted step sees only a few
shapes. The plan works on example indices and known image sizes only:

1. each example's bucket comes from its image size (`images.resized_size`, then
   `images.choose_bucket`);
2. per epoch, a numpy Generator seeded by (seed, epoch) permutes each bucket's indices,
   cuts them into global batches (training drops each bucket's remainder; evaluation
   keeps it and pads with -1), then shuffles the list of batches;
3. every process computes the same plan and keeps its contiguous slice of each global
   batch, so processes read disjoint shards and a 2-process run sees exactly the data
   of a 1-process run with the same global batch size.
"""

from collections.abc import Sequence

import numpy as np

from pixelbert_jax.data import images as images_lib

PAD_INDEX = -1  # Marks an empty slot of an evaluation batch.


def assign_buckets(sizes: np.ndarray, short_side: int, long_side_max: int,
                   buckets: Sequence[tuple[int, int]]) -> np.ndarray:
  """The bucket id of each example, from its images' (height, width) sizes.

  Args:
    sizes: int (N, K, 2), the K images of each example (K = 2 for NLVR2); a size of
      (0, 0) means unknown (an unreadable header): such an example is planned into
      the bucket of a square image and will be skipped when it fails to load.
    short_side, long_side_max: the resize rule of `images.resized_size`.
    buckets: the (height, width) buckets of `images.make_buckets`.

  Returns:
    int32 (N,) indices into `buckets`: the smallest bucket all K images fit in.
  """
  bucket_index = {bucket: i for i, bucket in enumerate(buckets)}
  fallback = images_lib.resized_size(1, 1, short_side, long_side_max)
  ids = np.empty(len(sizes), np.int32)
  for example, example_sizes in enumerate(np.asarray(sizes).reshape(len(sizes), -1, 2)):
    resized = [images_lib.resized_size(int(h), int(w), short_side, long_side_max)
               if min(h, w) > 0 else fallback for h, w in example_sizes]
    needed = (max(h for h, _ in resized), max(w for _, w in resized))
    ids[example] = bucket_index[images_lib.choose_bucket(*needed, buckets)]
  return ids


class BatchPlan:
  """The global batches of every epoch, as example indices, and each process's slice."""

  def __init__(self, bucket_ids: np.ndarray, num_buckets: int, global_batch_size: int,
               *, seed: int, training: bool):
    """Creates a plan.

    Args:
      bucket_ids: int (N,), each example's bucket (see `assign_buckets`).
      num_buckets: how many buckets there are.
      global_batch_size: examples per batch summed over all processes.
      seed: with the epoch, seeds the permutations; the same seed gives the same plan.
      training: True permutes and drops each bucket's remainder; False keeps the
        data order, pads the last batch of each bucket and makes one pass.
    """
    if global_batch_size < 1:
      raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.training = training
    bucket_ids = np.asarray(bucket_ids)
    self._members = [np.flatnonzero(bucket_ids == b) for b in range(num_buckets)]
    counts = np.array([len(m) for m in self._members])
    per_bucket = (counts // global_batch_size if training
                  else -(-counts // global_batch_size))
    self.batches_per_epoch = int(per_bucket.sum())
    if self.batches_per_epoch == 0:
      raise ValueError(f"no bucket holds a full global batch of {global_batch_size} "
                       f"(examples per bucket: {counts.tolist()})")
    self._cached_epoch: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None

  def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64 (batches, G) with `PAD_INDEX` padding, bucket ids (batches,))."""
    if self._cached_epoch is None or self._cached_epoch[0] != epoch:
      self._cached_epoch = (epoch, self._make_epoch(epoch))
    return self._cached_epoch[1]

  def _make_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([self.seed, epoch])
    size = self.global_batch_size
    batches, bucket_of_batch = [], []
    for bucket, members in enumerate(self._members):
      if self.training:
        members = rng.permutation(members)
        members = members[:len(members) // size * size]
      else:
        padding = -len(members) % size
        members = np.concatenate([members, np.full(padding, PAD_INDEX)])
      batches.extend(members.reshape(-1, size))
      bucket_of_batch.extend([bucket] * (len(members) // size))
    indices = np.asarray(batches, np.int64).reshape(-1, size)
    buckets = np.asarray(bucket_of_batch, np.int32)
    if self.training:
      # Shuffling the batches mixes the buckets over the epoch; evaluation keeps order.
      order = rng.permutation(len(indices))
      indices, buckets = indices[order], buckets[order]
    return indices, buckets

  def global_batch(self, step: int) -> tuple[np.ndarray, int]:
    """(example indices (G,), bucket id) of the `step`-th batch, epochs concatenated."""
    epoch, position = divmod(step, self.batches_per_epoch)
    indices, buckets = self.epoch(epoch)
    return indices[position], int(buckets[position])

  def process_batch(self, step: int, process_index: int, process_count: int
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """This process's slice of global batch `step`.

    Returns:
      (example indices (G / process_count,), their positions in the global batch,
      bucket id).
    """
    per_process = per_process_batch_size(self.global_batch_size, process_count)
    start = process_index * per_process
    indices, bucket = self.global_batch(step)
    positions = np.arange(start, start + per_process)
    return indices[positions], positions, bucket


def per_process_batch_size(global_batch_size: int, process_count: int) -> int:
  """G / process_count, refusing a global batch that does not split evenly."""
  if process_count < 1 or global_batch_size % process_count:
    raise ValueError(f"global_batch_size {global_batch_size} does not split over "
                     f"{process_count} processes")
  return global_batch_size // process_count
