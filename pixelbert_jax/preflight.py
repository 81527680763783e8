"""A run's config checked before any work: every path it needs, named in one message.

`main` calls `problems` before it creates the workdir, starts the distributed runtime or
reads any data. Without it, a config naming no data set stopped with a traceback about
its first missing field after seconds of set-up, and the next one followed once that
was set. Here every problem is found at once: the tokenizer, the task's data files
(each task declares them, `Task.data_paths`) and the init sources the run will read
(docs/ARCHITECTURE.md, "The trainer": the resume order). Local and `gs://` paths are
checked alike, through etils' epath.
"""

import os

from etils import epath

from pixelbert_jax.data import data_config
from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.tasks import base as tasks
from pixelbert_jax.weights import from_run, init_checkpoint, init_sources

SYNTHETIC = "synthetic"  # the data kind that writes its own world: no paths to check
TOKENIZER_EXAMPLE = "wordpiece:/path/to/bert-base-uncased/vocab.txt"


def problems(config, workdir: str) -> list[str]:
  """Every reason `config` cannot start in `workdir`, one line each; [] if none."""
  try:
    task = tasks.task_class(config.task)
  except ValueError as error:
    return [str(error)]
  data_cfg = config.data
  found = []
  if data_cfg.kind != SYNTHETIC or data_cfg.tokenizer:
    found += _tokenizer(data_cfg.tokenizer)
  if data_cfg.kind != SYNTHETIC and data_cfg.get("mixture"):
    found += _mixture_paths(data_cfg.mixture)
  elif data_cfg.kind != SYNTHETIC:
    found += _data_paths(data_cfg, task.data_paths)
  return found + _init_sources(config, workdir)


def message(found: list[str]) -> str:
  """The one message that lists `found` and says where to look."""
  lines = [f"The config cannot start ({len(found)} problem{'s' * (len(found) > 1)}):"]
  lines += [f"  {problem}" for problem in found]
  lines.append('Set each with --config.FIELD=VALUE; README.md, section "Data", lists '
               "the files each task reads and where to get them. Every config's :demo "
               "variant needs none (the synthetic world).")
  return "\n".join(lines)


def _unreadable(field: str, path: str) -> list[str]:
  """[] if `path` exists and can be read, else why not, naming the field."""
  try:
    exists = epath.Path(path).exists()
  except Exception as error:  # pylint: disable=broad-except
    # A remote store (gs://) raises its own errors (credentials, network).
    return [f"{field}={path}: cannot be checked: {str(error).splitlines()[0]}"]
  if not exists:
    return [f"{field}={path}: does not exist"]
  if "://" not in path and not os.access(path, os.R_OK):
    return [f"{field}={path}: not readable"]
  return []


def _tokenizer(spec: str) -> list[str]:
  """The tokenizer "kind:path": set, its file there, and loadable."""
  field = "config.data.tokenizer"
  if not spec:
    return [f"{field}: not set (e.g. {TOKENIZER_EXAMPLE})"]
  path = spec.partition(":")[2]
  found = _unreadable(field, path) if path else []
  if not found:
    try:
      tokenizer_lib.from_config(spec)  # a vocabulary loads in milliseconds
    except (OSError, ValueError, RuntimeError) as error:
      found = [f"{field}={spec}: {error}"]
  return found


def _as_paths(value) -> tuple[str, ...]:
  """A field's paths: one path or a list of them (empty when not set)."""
  if not value:
    return ()
  return (value,) if isinstance(value, str) else tuple(value)


def _data_paths(data_cfg, declared: tasks.DataPaths) -> list[str]:
  """The task's fields in order: each required one set, each optional group set all
  together or not at all, every path there."""
  groups = [((name,), True) for name in declared.required]
  groups += [(group, False) for group in declared.optional]
  found = []
  for group, required in groups:
    needed = required or any(_as_paths(data_cfg[name]) for name in group)
    together = f" ({', '.join(group)} go together)" if len(group) > 1 else ""
    for name in group:
      paths = _as_paths(data_cfg[name])
      if needed and not paths:
        found.append(f"config.data.{name}: not set{together}")
      for path in paths:
        found += _unreadable(f"config.data.{name}", path)
  return found


def _mixture_paths(mixture) -> list[str]:
  """Every path of every source of `data.mixture` (its format's, in order) set and
  there; the mixture replaces the task's own data fields."""
  found = []
  for name in sorted(mixture):
    source, field = mixture[name], f"config.data.mixture.{name}"
    wanted = data_config.MIXTURE_FORMATS.get(source.format)
    if wanted is None:
      found.append(f"{field}.format={source.format}: use one of "
                   f"{', '.join(data_config.MIXTURE_FORMATS)}")
      continue
    paths = tuple(source.paths or ()) + ("",) * (len(wanted) - len(source.paths or ()))
    for index, (path, what) in enumerate(zip(paths, wanted)):
      if not path:
        found.append(f"{field}.paths[{index}] ({what}): not set")
      else:
        found += _unreadable(f"{field}.paths[{index}]", path)
  return found


def _init_sources(config, workdir: str) -> list[str]:
  """The sources the run will read its weights from, where they apply: none when the
  workdir holds a checkpoint (it resumes); else `resume_from`, or `init` (unless
  `init_from` supplies the body). `init_from` is checked whenever the workdir has no
  checkpoint, as the trainer does."""
  if _has_checkpoint(epath.Path(workdir) / "checkpoints"):
    return []
  found = []
  if config.resume_from and not _has_checkpoint(epath.Path(config.resume_from)):
    found.append(f"config.resume_from={config.resume_from}: no finished checkpoint "
                 "there (expected a run's checkpoints folder, holding <step>/state)")
  if (config.init and config.init != init_sources.SYNTHETIC and not config.init_from
      and not config.resume_from):
    if not (init_checkpoint.absolute(config.init) / "params").exists():
      found.append(f"config.init={config.init}: no initialisation checkpoint there "
                   "(no params/; `python -m pixelbert_jax.tools.import_weights` writes "
                   f"one), nor {init_sources.SYNTHETIC!r}")
  if config.init_from:
    try:
      from_run.state_dir(config.init_from)
    except FileNotFoundError as error:
      found.append(f"config.{error}")
  return found


def _has_checkpoint(directory: epath.Path) -> bool:
  """Whether `directory` is a checkpoints folder holding a finished step."""
  return directory.is_dir() and bool(from_run.finished_steps(directory))
