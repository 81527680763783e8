"""Test-wide set-up: 8 fake CPU devices, a private world cache, one XLA compilation
cache for the whole run, and one small synthetic world for trainer tests."""

import importlib
import os
import sys
import tempfile

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Worlds without a data root go to a cache folder (`data/synthetic/cache.py`): the
# tests' own, never the user's.
os.environ.setdefault("PIXELBERT_CACHE", tempfile.mkdtemp(prefix="pixelbert_cache_"))
# One persistent compilation cache for the run, shared by both xdist workers and every
# process a test starts (the environment passes on): the tests build the same few small
# models again and again, and XLA:CPU takes 0.1 s to compile the smallest program and
# tens of seconds for a train step. Fresh for every run, so no stale entry is read.
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"pixelbert_jax_xla_cache_{_RUN_ID}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

try:
  # PyTorch's triton (pulled in by transformers) crashes when its library loads after
  # TensorFlow's (clu's metric writers); loaded first, both work.
  importlib.import_module("triton")
except ImportError:
  pass

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # the configs/ package, for every test
  sys.path.insert(0, REPO)


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "first: a long, memory-hungry test, started before all others")


def pytest_collection_modifyitems(items):
  """Starts the `first` tests first. xdist's load scheduler hands out the collection
  in order, so such a test runs on a fresh worker, beside the other worker's earliest
  tests, rather than late, beside workers grown by hundreds of compiles (the 8-device
  paper-model test peaks at 15 GiB of this machine's 24) and as the run's long tail."""
  items.sort(key=lambda item: item.get_closest_marker("first") is None)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> str:
  """A 48-image synthetic world (with its marker), shared by the trainer tests."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from pixelbert_jax.data.synthetic import cache  # pylint: disable=g-import-not-at-top

  root = str(tmp_path_factory.mktemp("world"))
  data = ml_collections.ConfigDict(dict(root=root, synthetic_num_images=48,
                                        synthetic_seed=0))
  cache.ensure(data, root)
  return root


@pytest.fixture(scope="module")
def tokenizer(world):
  """The WordPiece tokenizer of the module's own `world` fixture (a synthetic world)."""
  from pixelbert_jax.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  return tokenizer_lib.WordPieceTokenizer.from_vocab_file(world["vocab"])


def assert_same_batches(expected, actual):
  """Two lists of batches (dicts of numpy arrays) are equal, key by key."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  assert len(expected) == len(actual)
  for want, got in zip(expected, actual):
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(want[key], got[key], err_msg=key)


def load_json(path):
  import json  # pylint: disable=g-import-not-at-top
  with open(path, encoding="utf-8") as f:
    return json.load(f)


# The tiny preset's Transformer (2 x 64), in place of the demo's 4 x 128, keeps the
# trainer tests short; `test_train` runs the demo's own model.
TINY_TRANSFORMER = {"model.transformer_num_layers": 2, "model.transformer_hidden": 64,
                    "model.transformer_mlp": 128, "model.transformer_init_std": 0.125}


def trainer_overrides(world: str, steps: int) -> dict:
  """A seconds-long pre-training run of the tiny model on the small world."""
  return {
      **TINY_TRANSFORMER,
      "init": "",  # the demos' synthetic backbone takes minutes to train; see its test
      "data.root": world, "data.synthetic_num_images": 48, "data.image_short_side": 64,
      "data.image_long_side": 112, "data.max_text_len": 16, "global_batch_size": 8,
      "num_train_steps": steps, "num_sampled_pixels": 8, "log_every_steps": 1,
      "eval_every_steps": 1000, "eval_batches": 1, "checkpoint_every_steps": 3,
      "optimizer.warmup_steps": 0,
  }


# Small images for the task tests: one bucket, so each step compiles once.
SMALL_IMAGES = {"data.image_short_side": 64, "data.image_long_side": 64}


def run_main(config_arg: str, workdir, overrides: dict, env: dict | None = None) -> None:
  """`python -m pixelbert_jax.main --config=<config_arg>` in a fresh process on 4 fake
  devices, with `--config.<field>=<value>` overrides; fails with its output."""
  import subprocess  # pylint: disable=g-import-not-at-top

  command = ([sys.executable, "-m", "pixelbert_jax.main", f"--config={config_arg}",
              f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in overrides.items()])
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", **(env or {}))
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def pretrain_tiny(world: str, workdir: str, steps: int = 1) -> None:
  """A seconds-long demo pre-training on the small world at 64 px (an init_from)."""
  from configs import pretrain as pretrain_config  # pylint: disable=g-import-not-at-top
  from pixelbert_jax import train  # pylint: disable=g-import-not-at-top

  config = pretrain_config.get_config("demo")
  train.train_and_evaluate(override(config, {**trainer_overrides(world, steps),
                                             **SMALL_IMAGES}), workdir)


def module_arrays(state, module: str) -> dict:
  """{path: array} of one module's parameters and batch statistics in a restored state."""
  return {f"{field}{path}": value for field in ("params", "batch_stats")
          for path, value in flat_arrays(state[field].get(module, {}))}


def override(config, overrides: dict):
  """Sets dotted fields ("data.root") of an ml_collections config in place; returns it."""
  for name, value in overrides.items():
    *parents, leaf = name.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def restore_state(workdir, step: int):
  """A run's `state` item at `step`, onto this process's first device, whatever the
  device topology that wrote it."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  path = os.path.join(str(workdir), "checkpoints", str(step), "state")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.StandardCheckpointer() as checkpointer:
    stored = checkpointer.metadata(path).item_metadata
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), stored)
    return checkpointer.restore(path, target)


def flat_arrays(tree) -> list:
  """[(path, numpy array)] of a tree, in a fixed order."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [(jax.tree_util.keystr(p), np.asarray(v)) for p, v in flat]


def scalars(workdir, tag: str) -> list[float]:
  """The values a run wrote for `tag` to its TensorBoard event files, in step order."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top

  events = event_accumulator.EventAccumulator(str(workdir), size_guidance={"tensors": 0})
  events.Reload()
  return [float(np.asarray(tensor_util.make_ndarray(e.tensor_proto)))
          for e in events.Tensors(tag)]
