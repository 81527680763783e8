r"""Exports a trained run for inference: its weights without the optimiser state.

A training checkpoint holds Adam's two moments beside the weights (three times their
size) and the data iterator; serving, sharing or fine-tuning from a run needs none of
it. The export is itself a run folder that `load_run`, the Predictor, `predict` and
`config.init_from` read like the original:

  OUT/config.json                the run's config
  OUT/tokenizer/                 the tokenizer the run trained with
  OUT/<the task's run files>    e.g. VQA's answer_vocab.json (`Task.run_files`)
  OUT/checkpoints/<step>/state   params and batch statistics (orbax), nothing else

  python -m pixelbert_jax.export --run=WORKDIR --out=DIR [--dtype=bfloat16]

`--dtype=bfloat16` halves the size again; loading casts the weights back to the
model's dtype.
"""

import argparse
import json
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.inference import loading
from pixelbert_jax.tasks import base as tasks
from pixelbert_jax.tasks import common
from pixelbert_jax.weights import from_run, init_checkpoint

DTYPES = ("float32", "bfloat16")


def _check_tokenizer(workdir: epath.Path, spec: str | None) -> None:
  """Refuses a run with neither its own tokenizer copy nor a spec for one (a run from
  before runs kept their tokenizer: its vocabulary may live anywhere)."""
  if not spec and not (workdir / common.TOKENIZER_DIR).exists():
    raise FileNotFoundError(
        f"{workdir} has no {common.TOKENIZER_DIR}/ (a run from before runs kept "
        "their tokenizer): pass --tokenizer=wordpiece:/path/vocab.txt or "
        "sentencepiece:/path/model")


def _copy_tokenizer(workdir: epath.Path, out: epath.Path, spec: str | None) -> None:
  target = out / common.TOKENIZER_DIR
  if spec:
    tokenizer_lib.save_copy(spec, target)
  else:
    shutil.copytree(workdir / common.TOKENIZER_DIR, target)


def _cast(weights: dict, dtype: str) -> dict:
  """Floating-point arrays in `dtype`; integer arrays (if any) as they are."""
  target = jax.numpy.dtype(dtype)
  return jax.tree.map(
      lambda a: a.astype(target) if np.issubdtype(a.dtype, np.floating) else a, weights)


def export(run: str | epath.PathLike, out: str | epath.PathLike, *,
           dtype: str = "float32", tokenizer: str | None = None) -> epath.Path:
  """Writes the inference export of `run` (a workdir or a step folder) to `out`.

  Returns:
    The exported `state` folder.
  Raises:
    FileExistsError: `out` exists (an export never overwrites).
    FileNotFoundError: `run` has no config, checkpoint or tokenizer.
  """
  if dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
  run, out = epath.Path(run), init_checkpoint.absolute(out)
  if out.exists():
    raise FileExistsError(f"{out} exists; the export writes a new folder")
  workdir = loading.find_workdir(run)
  state = loading.checkpoint_dir(run, workdir)
  _check_tokenizer(workdir, tokenizer)
  weights = _cast(from_run.read_weights(state.parent), dtype)
  out.mkdir(parents=True)
  _copy_tokenizer(workdir, out, tokenizer)
  task = tasks.task_class(loading.read_config(workdir).task)
  for name in (loading.CONFIG_FILE, *task.run_files):
    if (workdir / name).exists():
      (out / name).write_text((workdir / name).read_text())
  target = out / "checkpoints" / state.parent.name / from_run.STATE_ITEM
  with ocp.PyTreeCheckpointer() as checkpointer:
    checkpointer.save(target, weights)
  return target


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--run", required=True,
                      help="the training workdir (its latest checkpoint) or a step folder")
  parser.add_argument("--out", required=True, help="a new folder for the export")
  parser.add_argument("--dtype", default="float32", choices=DTYPES)
  parser.add_argument("--tokenizer", default=None,
                      help="tokenizer spec, for runs that did not keep a copy")
  args = parser.parse_args(argv)
  try:
    state = export(args.run, args.out, dtype=args.dtype, tokenizer=args.tokenizer)
  except (FileNotFoundError, FileExistsError) as e:
    parser.exit(2, f"error: {e}\n")
  print(json.dumps({"state": str(state)}))


if __name__ == "__main__":
  main()
