r"""Writes, or checks, the synthetic backbone the package ships for the demos.

    python -m pixelbert_jax.weights.ship_backbone --config=configs/pretrain.py:demo
    (add --write to replace the shipped weights; about 6 minutes on 2 cores)

The config's recipe (its `synthetic_backbone` settings, model preset, resolution and
world seed) is trained from scratch. `--write` stores it under
`synthetic_backbone.SHIPPED_DIR` with its recipe and the parameter norms after the
recipe's first `TRAIL_STEPS` steps (what the test suite replays). Without it, the
retrained weights are compared with the shipped ones, and the largest difference is
printed relative to each parameter's scale.
"""

import json
import shutil
import time

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from pixelbert_jax.weights import init_checkpoint
from pixelbert_jax.weights import synthetic_backbone as backbone_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "A demo config.",
                                          lock_config=True)
_WRITE = flags.DEFINE_bool("write", False, "Replace the shipped weights with a retrained set.")


def _compare(model, directory) -> dict:
  """Largest |retrained - shipped| / max|shipped| over the parameters, and where."""
  stored, _ = init_checkpoint.load(directory)
  worst, where = 0.0, ""
  for name, variable in init_checkpoint.flat_variables(model.backbone).items():
    want = stored["backbone"][name]
    scale = max(float(np.abs(want).max()), 1e-12)
    difference = float(np.abs(np.asarray(variable[...]) - want).max()) / scale
    if difference > worst:
      worst, where = difference, name
  return {"max_relative_difference": worst, "parameter": where}


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  directory = backbone_lib.SHIPPED_DIR / backbone_lib._name(config)  # pylint: disable=protected-access
  start = time.time()
  model, metrics = backbone_lib.train_recipe(config)
  seconds = round(time.time() - start, 1)
  if not _WRITE.value:
    report = dict(_compare(model, directory), retrained=metrics, seconds=seconds,
                  shipped=json.loads((directory / init_checkpoint.INFO_FILE).read_text())
                  ["final"])
    print(json.dumps(report, indent=2))
    return
  trail_model, _ = backbone_lib.train_recipe(config, stop_after=backbone_lib.TRAIL_STEPS)
  info = dict(config.synthetic_backbone.to_dict(), recipe=backbone_lib.recipe(config),
              created=time.strftime("%Y-%m-%dT%H:%M:%S"), source="synthetic scenes",
              seconds=seconds, final=metrics, components=["backbone"],
              trail={"steps": backbone_lib.TRAIL_STEPS,
                     "norms": backbone_lib.parameter_norms(trail_model)})
  if directory.exists():
    shutil.rmtree(directory)
  backbone_lib.save(model, directory, info)
  logging.info("Wrote %s: %s", directory, metrics)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
