"""The data fields the input pipelines read, with their defaults: the one place they are set.

`configs/common.data` starts from `DATA_DEFAULTS`; the task set-ups and the tests build
the pipelines' config with `make_config`. Light on purpose (no grain), so that configs
import it anywhere.
"""

import ml_collections

from pixelbert_jax.data import images as images_lib

# Every data field the pipelines read, with its default (the paper's R50 resolution).
DATA_DEFAULTS = {
    "image_short_side": 800, "image_long_side": 1333,
    "aspect_ratios": images_lib.DEFAULT_ASPECT_RATIOS, "bucket_multiple": 64,
    "max_text_len": 40, "mlm_probability": 0.15, "mlm_focus_words": (),
    "mlm_focus_share": 0.0,  # see `masking.mask_tokens`
    "itm_swap_words": (),  # word groups for swapped captions (`swaps`)
    "num_workers": 0, "read_threads": 2, "prefetch_batches": 2,
    "max_skip_fraction": 0.01, "skip_min_seen": 100,
}

# A mixture source's formats (`data.mixture`, `mixture_source`) and the paths each
# takes, in order; for the synthetic world, names of its files (`cache.read_marker`).
MIXTURE_FORMATS = {
    "karpathy": ("dataset_coco.json", "COCO image folder (train2014/, val2014/)"),
    "vg": ("region_descriptions.json", "image_data.json", "VG image folder"),
    "cc3m": ("Train_GCC-training.tsv", "image folder"),
    "cc12m": ("cc12m.tsv", "image folder"),
    "sbu": ("urls file", "captions file", "image folder"),
    "img2dataset": ("img2dataset output folder",),
    "packed": ("folder written by data.pack",),
}


def make_config(*, global_batch_size: int, num_epochs: float | None = None,
                **fields) -> ml_collections.ConfigDict:
  """The pipelines' config: `DATA_DEFAULTS` with `fields` over them, locked."""
  cfg = ml_collections.ConfigDict(dict(DATA_DEFAULTS, global_batch_size=global_batch_size,
                                       num_epochs=num_epochs))
  cfg.lock()
  cfg.update(fields)  # a field that is not a pipeline field is an error here
  return cfg


def from_data_config(data_cfg, **fields) -> ml_collections.ConfigDict:
  """The pipelines' config from a run's `config.data` (its pipeline fields; where,
  what kind and the like are not the pipelines') with `fields` over them."""
  found = {name: data_cfg[name] for name in DATA_DEFAULTS if name in data_cfg}
  return make_config(**{**found, **fields})


def checked(cfg) -> ml_collections.ConfigDict:
  """A config from `make_config` as it is; a plain mapping's fields over the defaults,
  checked (an unknown field is an error; `global_batch_size` is required)."""
  if isinstance(cfg, ml_collections.ConfigDict) and cfg.is_locked:
    return cfg
  return make_config(**dict(cfg))


def mixture_source(source_format: str, paths: tuple[str, ...], weight: float, *,
                   max_skip_fraction: float | None = None,
                   image_pattern: str = "") -> dict:
  """One source of `data.mixture` (name -> source; `pixelbert_jax.data.mixture` reads
  them).

  Args:
    source_format: karpathy, vg, cc3m, cc12m, sbu, img2dataset or packed.
    paths: the format's files and folders, in the order of `MIXTURE_FORMATS`
      (for the synthetic world: names of its files, as its marker lists them).
    weight: the source's share of an epoch is weight / sum of the weights.
    max_skip_fraction: the bound on the share of its entries the reader may skip;
      None: `data.max_skip_fraction`.
    image_pattern: for cc3m, cc12m and sbu, where row i's image is (the readers'
      default when empty).
  """
  return dict(format=source_format, paths=tuple(paths), weight=float(weight),
              max_skip_fraction=max_skip_fraction, image_pattern=image_pattern)
