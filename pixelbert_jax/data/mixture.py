"""Pre-training on several sources at once, each at a chosen rate: a planned mixture.

A mixture is a mapping name -> source (`data_config.mixture_source`): a reader
format, its paths, a weight and an optional skip bound of its own. Each source is
read on its own (its reader skips counted against its own bound: web corpora lose
about 15 % of their rows to dead urls, COCO none), and the sources are laid end to
end in one random-access `MixtureSource`, sources in name order.

The mixing happens in the batch plan (`MixturePlan`), before anything is decoded, so
that the pipeline around it is the single-source one: the same plan on every
process (per-process slices of each global batch), grain's iterator state in the
checkpoint for an exact resume, and one bucket per batch. The plan:

* an epoch of the mixture holds as many examples as all sources together (with
  weights proportional to the sources' sizes it is one pass over each, as today's
  epoch over COCO + VG);
* source s gives `weight_s / sum(weights)` of them, split over the image buckets in
  the proportions of its own images, so every epoch has the same number of batches;
* each (source, bucket) is an endless stream of seeded passes (a new permutation
  per pass), and epoch e takes the next slice of it: a source drawn less than its
  size is not cut to a fixed subset, it goes on where the previous epoch stopped; a
  source drawn more than its size is repeated whole before any example comes twice
  more than another;
* within each bucket the draws of every source are shuffled together, cut into
  global batches (the remainder dropped, as today) and the batches shuffled, all
  seeded by (seed, epoch): any batch is a function of the seed and its index alone.

The realised rates (shares of each source in the batches actually given) differ from
the weights only by the rounding of the per-bucket counts and the dropped remainders;
`MixturePlan.source_rates` measures them and the pipeline logs them.

Skips are bounded per source twice: the reader's (dead urls, bad captions) as each
source is read, and images that fail to load in the pipeline, counted per source
(`MixtureSource.skip_bounds`) in the iterator state.
"""

from collections.abc import Mapping, Sequence
import dataclasses
from typing import Any

from absl import logging
import numpy as np

from pixelbert_jax.data import batch_plan
from pixelbert_jax.data import data_config
from pixelbert_jax.data import pack
from pixelbert_jax.data import sources
from pixelbert_jax.data.readers import coco
from pixelbert_jax.data.readers import conceptual_captions
from pixelbert_jax.data.readers import img2dataset
from pixelbert_jax.data.readers import sbu
from pixelbert_jax.data.readers import visual_genome

FORMAT_PATHS = data_config.MIXTURE_FORMATS
# Which of the plan's random streams draws the mixture's passes (the epoch's
# shuffles use (seed, epoch) as the single-source plan does).
_PASS_STREAM = 7


@dataclasses.dataclass(frozen=True)
class SourceSpec:
  """One source of a mixture, as the config names it (`data_config.mixture_source`)."""
  name: str
  format: str
  paths: tuple[str, ...]
  weight: float
  max_skip_fraction: float
  image_pattern: str = ""


def specs_from_config(mixture_cfg: Mapping, world: Mapping[str, str] | None,
                      default_skip_fraction: float) -> list[SourceSpec]:
  """The mixture's sources in name order, checked; for the synthetic world each path
  is a name in its marker (`cache.read_marker`) and becomes that file's path."""
  specs = []
  for name in sorted(mixture_cfg):
    entry = mixture_cfg[name]
    fmt, paths = entry["format"], tuple(entry["paths"] or ())
    if fmt not in FORMAT_PATHS:
      raise ValueError(f"data.mixture.{name}.format={fmt!r}: use one of "
                       f"{', '.join(FORMAT_PATHS)}")
    if len(paths) != len(FORMAT_PATHS[fmt]) or not all(paths):
      raise ValueError(f"data.mixture.{name}.paths: format {fmt} takes "
                       f"({', '.join(FORMAT_PATHS[fmt])}), got {paths}")
    if world is not None:
      unknown = [p for p in paths if p not in world]
      if unknown:
        raise ValueError(f"data.mixture.{name}.paths: {unknown} are not files of the "
                         f"synthetic world (it has {', '.join(sorted(world))})")
      paths = tuple(world[p] for p in paths)
    if not entry["weight"] > 0:
      raise ValueError(f"data.mixture.{name}.weight must be positive, got "
                       f"{entry['weight']}")
    bound = entry.get("max_skip_fraction")
    specs.append(SourceSpec(name, fmt, paths, float(entry["weight"]),
                            default_skip_fraction if bound is None else float(bound),
                            entry.get("image_pattern") or ""))
  return specs


def karpathy_json(specs: Sequence[SourceSpec]) -> str | None:
  """The Karpathy file of the mixture's COCO source (its test images stay out of VG;
  its val split is the held-out set), or None."""
  found = [spec.paths[0] for spec in specs if spec.format == "karpathy"]
  return found[0] if found else None


def reader(spec: SourceSpec, karpathy: str | None):
  """`read(skips) -> records` of one source (for `tasks.common.read_split`)."""
  paths, pattern = spec.paths, ({"image_pattern": spec.image_pattern}
                                if spec.image_pattern else {})
  if spec.format == "karpathy":
    return lambda skips: coco.read_karpathy(*paths, ("train", "restval"), skips=skips)
  if spec.format == "vg":
    if karpathy is None:  # without it the Karpathy test images could leak in
      raise ValueError(f"data.mixture.{spec.name}: a vg source needs a karpathy source "
                       "in the mixture (its test images are left out of VG)")
    test_ids = coco.karpathy_coco_ids(karpathy, ("test",))
    return lambda skips: visual_genome.read_visual_genome(
        *paths, exclude_coco_ids=test_ids, skips=skips)
  if spec.format in ("cc3m", "cc12m"):
    read = (conceptual_captions.read_cc3m if spec.format == "cc3m"
            else conceptual_captions.read_cc12m)
    return lambda skips: read(*paths, skips=skips, **pattern)
  if spec.format == "sbu":
    return lambda skips: sbu.read_sbu(*paths, skips=skips, **pattern)
  if spec.format == "img2dataset":
    return lambda skips: img2dataset.read_img2dataset(paths[0], skips=skips,
                                                      source=spec.name)
  return None  # packed: nothing to read here, the folder is the source


def open_source(spec: SourceSpec, examples: list | None):
  """A random-access source of one spec: its records over raw files, or the packed
  folder."""
  return pack.PackedSource(spec.paths[0]) if examples is None else sources.RawSource(
      examples)


class MixtureSource:
  """Sources laid end to end: example i of the mixture is example i - offset[s] of
  source s. Answers like `sources.RawSource`, and plans its batches as a mixture."""

  def __init__(self, specs: Sequence[SourceSpec], parts: Sequence[Any]):
    if len(specs) != len(parts) or not specs:
      raise ValueError("a mixture needs one source per spec, and at least one")
    empty = [spec.name for spec, part in zip(specs, parts) if not len(part)]
    if empty:
      raise ValueError(f"mixture sources without examples: {', '.join(empty)}")
    self.specs = tuple(specs)
    self.parts = tuple(parts)
    self.offsets = np.cumsum([0] + [len(part) for part in parts])

  def __len__(self) -> int:
    return int(self.offsets[-1])

  def locate(self, index: int) -> tuple[Any, int]:
    """(the source holding example `index`, its index there)."""
    part = self.source_of(index)
    return self.parts[part], index - int(self.offsets[part])

  def source_of(self, indices) -> np.ndarray:
    """The source number (into `specs`) of each example index."""
    return np.searchsorted(self.offsets, indices, side="right") - 1

  def record(self, index: int):
    part, local = self.locate(index)
    return part.record(local)

  def image_names(self, index: int) -> tuple[str, ...]:
    part, local = self.locate(index)
    return part.image_names(local)

  def image_bytes(self, index: int) -> list[bytes]:
    part, local = self.locate(index)
    return part.image_bytes(local)

  def image_sizes(self) -> np.ndarray:
    return np.concatenate([part.image_sizes() for part in self.parts])

  @property
  def skip_bounds(self) -> dict[str, float]:
    """{source name: its max_skip_fraction}: the pipeline bounds images that fail to
    load per source too (`pipeline.SkipBoundIterator`)."""
    return {spec.name: spec.max_skip_fraction for spec in self.specs}

  def skip_groups(self, indices) -> list[str]:
    """The source name of each example index (padding: the first source's)."""
    return [self.specs[max(part, 0)].name for part in self.source_of(indices)]

  def make_plan(self, bucket_ids: np.ndarray, num_buckets: int, global_batch_size: int,
                *, seed: int, training: bool) -> "MixturePlan":
    """The pipeline's plan (`pipeline.make_pipeline` asks its source for one)."""
    if not training:
      raise ValueError("a mixture is for training; evaluate on one source")
    plan = MixturePlan(bucket_ids, num_buckets, global_batch_size, seed=seed,
                       offsets=self.offsets, weights=[s.weight for s in self.specs])
    rates = plan.source_rates(0)
    for spec, part, count, rate in zip(self.specs, self.parts, plan.per_epoch, rates):
      logging.info("mixture: %s (%s) %d examples, weight %g: %d per epoch (%.2f "
                   "passes), realised rate %.4f in epoch 0", spec.name, spec.format,
                   len(part), spec.weight, count, count / len(part), rate)
    return plan


class MixturePlan(batch_plan.BatchPlan):
  """A training plan that draws each source at its weight (see the module docstring);
  the same interface as `batch_plan.BatchPlan`."""

  def __init__(self, bucket_ids: np.ndarray, num_buckets: int, global_batch_size: int,
               *, seed: int, offsets: Sequence[int], weights: Sequence[float]):
    """Creates a plan.

    Args:
      bucket_ids: int (N,), each example's bucket, the sources laid end to end.
      num_buckets: how many buckets there are.
      global_batch_size: examples per batch summed over all processes.
      seed: with the epoch, seeds every draw and shuffle.
      offsets: (S + 1,) where each source starts in `bucket_ids`, and N.
      weights: (S,) positive; source s gives weights[s] / sum(weights) of an epoch.
    """
    if global_batch_size < 1:
      raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
    self.global_batch_size, self.seed, self.training = global_batch_size, seed, True
    self.offsets = np.asarray(offsets)
    bucket_ids = np.asarray(bucket_ids)
    shares = np.asarray(weights, np.float64) / np.sum(weights)
    epoch_examples = len(bucket_ids)
    # (source, bucket, member indices, draws per epoch) of every non-empty stream.
    self._streams = []
    for source, share in enumerate(shares):
      ids = bucket_ids[self.offsets[source]:self.offsets[source + 1]]
      for bucket in range(num_buckets):
        members = self.offsets[source] + np.flatnonzero(ids == bucket)
        count = round(share * epoch_examples * len(members) / len(ids))
        if count:
          self._streams.append((source, bucket, members, count))
    self.per_epoch = np.zeros(len(shares), np.int64)
    per_bucket = np.zeros(num_buckets, np.int64)
    for source, bucket, _, count in self._streams:
      self.per_epoch[source] += count
      per_bucket[bucket] += count
    self._num_buckets = num_buckets
    self.batches_per_epoch = int((per_bucket // global_batch_size).sum())
    if self.batches_per_epoch == 0:
      raise ValueError(f"no bucket holds a full global batch of {global_batch_size} "
                       f"(mixture draws per bucket: {per_bucket.tolist()})")
    self._cached_epoch = None

  def _draw(self, stream: tuple, epoch: int) -> np.ndarray:
    """Epoch `epoch`'s slice of a stream: the next `count` of its endless passes."""
    source, bucket, members, count = stream
    start = epoch * count
    first, last = start // len(members), (start + count - 1) // len(members)
    passes = [members[np.random.default_rng(
        [self.seed, _PASS_STREAM, source, bucket, k]).permutation(len(members))]
              for k in range(first, last + 1)]
    offset = start - first * len(members)
    return np.concatenate(passes)[offset:offset + count]

  def _make_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([self.seed, epoch])
    size = self.global_batch_size
    batches, bucket_of_batch = [], []
    for bucket in range(self._num_buckets):
      drawn = [self._draw(s, epoch) for s in self._streams if s[1] == bucket]
      if not drawn:
        continue
      members = rng.permutation(np.concatenate(drawn))
      members = members[:len(members) // size * size]
      batches.extend(members.reshape(-1, size))
      bucket_of_batch.extend([bucket] * (len(members) // size))
    indices = np.asarray(batches, np.int64).reshape(-1, size)
    order = rng.permutation(len(indices))
    return indices[order], np.asarray(bucket_of_batch, np.int32)[order]

  def source_rates(self, epoch: int) -> np.ndarray:
    """(S,) each source's share of the examples in epoch `epoch`'s batches."""
    indices, _ = self.epoch(epoch)
    sources_of = np.searchsorted(self.offsets, indices.ravel(), side="right") - 1
    counts = np.bincount(sources_of, minlength=len(self.offsets) - 1)
    return counts / counts.sum()
