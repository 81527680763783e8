"""The paper's R50 + BERT-base on 8 simulated CPU devices, data x fsdp x tensor = 2 x 2 x 2
(issue 17): at a reduced image size and batch, the real pre-training step compiles,
steps with the losses of one device for the same global batch, keeps its parameters
split over the mesh, and resumes from an orbax checkpoint to the same next step.

Each side runs in a process of its own (this file, run as a script): the reference with
one device; the mesh run (two steps, a save, the third step); and the resume, which
plans the state without allocating it, restores into the plan and takes the third step
again, as `main` resumes. Eight simulated devices of BERT-base cost about 14 GiB in one
process (each device's gathered weights and gradients; docs in benchmarks/RESULTS.md,
issue 17), so the continuing and the resumed run do not share one, and a crash there
fails this test with the child's output instead of taking the pytest worker down.
"""

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLP_IN = "['encoder']['layers'][0]['mlp_in']['kernel']"
WORDS = "['text_embedder']['word']['embedding']"
STEPS = 3
TIMEOUT_S = 900


def _run_side(side: str, tmp_path) -> dict:
  """Runs this file as `side` ("one", "mesh" or "resume") in a fresh process; its JSON
  report."""
  devices = 1 if side == "one" else 8
  # The memory-minded scheduler lowers each simulated device's temporaries by a fifth
  # (0.87 GiB, not 1.07); two malloc arenas keep freed pages from piling up per thread.
  flags = (f"--xla_force_host_platform_device_count={devices} "
           "--xla_cpu_enable_concurrency_optimized_scheduler=false")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags, MALLOC_ARENA_MAX="2")
  out = tmp_path / f"{side}.json"
  done = subprocess.run([sys.executable, os.path.abspath(__file__), side, str(out),
                         str(tmp_path / "checkpoints")], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
  assert done.returncode == 0, (f"the {side} side exited with {done.returncode}:\n"
                                f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
  return json.loads(out.read_text())


@pytest.mark.first
def test_paper_model_on_a_2x2x2_mesh_matches_one_device_and_resumes(tmp_path):
  one = _run_side("one", tmp_path)
  mesh = _run_side("mesh", tmp_path)
  resumed = _run_side("resume", tmp_path)
  assert mesh["devices"] == resumed["devices"] == 8 and one["devices"] == 1
  np.testing.assert_allclose(mesh["losses"], one["losses"], rtol=1e-4)
  # BERT-base's matrices are split over fsdp and tensor (AdamW's moments with them).
  assert mesh["mlp_in"] == {"shape": [768, 3072], "spec": ["fsdp", "tensor"],
                            "shard": [384, 1536]}
  assert mesh["words"] == {"shape": [30522, 768], "spec": ["tensor", "fsdp"],
                           "shard": [15261, 384]}
  # Restored from the step-2 checkpoint, step 3 is the continuing run's, bit for bit.
  assert resumed["restored_step"] == 2
  assert resumed["mlp_in"] == mesh["mlp_in"]
  assert resumed["loss"] == mesh["losses"][2]
  assert resumed["mlp_in_sum"] == mesh["continued_mlp_in_sum"]
  print(f"peak resident memory: one device {one['peak_rss_gib']:.1f} GiB, mesh "
        f"{mesh['peak_rss_gib']:.1f} GiB, resume {resumed['peak_rss_gib']:.1f} GiB")


# --------------------------------------------------------------------------- the sides


def _param(state, path: str):
  import jax  # pylint: disable=g-import-not-at-top
  [leaf] = [leaf for key, leaf in jax.tree_util.tree_flatten_with_path(state.params)[0]
            if path in jax.tree_util.keystr(key)]
  return leaf


def _layout(array) -> dict:
  return {"shape": list(array.shape), "spec": list(array.sharding.spec),
          "shard": list(array.addressable_shards[0].data.shape)}


def _exact_sum(array) -> str:
  """A bit-exact fingerprint of an array (its float64 sum's hex): JSON keeps it whole."""
  import jax  # pylint: disable=g-import-not-at-top
  return float(np.asarray(jax.device_get(array), np.float64).sum()).hex()


def _build(mesh_shape, materialise=True):
  """The paper's R50 (`configs/pretrain.py`) at 64 x 64, batch 8; float32 and no
  dropout, so that two partitionings of one step agree to float tolerance."""
  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  import train_step as step_bench  # pylint: disable=g-import-not-at-top
  from pixelbert_jax import train  # pylint: disable=g-import-not-at-top
  from pixelbert_jax.tasks import base as tasks  # pylint: disable=g-import-not-at-top

  setting = step_bench.Setting("", 8, (64, 64), (64, 57), on_cpu=True)
  config = step_bench.make_config(setting, setting.batch, "sampled")
  config.model.update(dtype="float32", dropout=0.0)
  config.mesh.shape = mesh_shape
  vocab = step_bench.vocab_size(config)
  step = train.build_step(config, tasks.get(config), {}, vocab, steps=100,
                          materialise=materialise)
  batches = [step_bench.random_batch(config, setting, setting.batch, vocab, seed=i)
             for i in range(STEPS)]
  to_global = train.make_global(step.mesh, step.rules)
  return step, [to_global(batch) for batch in batches]


def _checkpointer(checkpoints: str):
  from pixelbert_jax import checkpointing  # pylint: disable=g-import-not-at-top
  return checkpointing.Checkpointer(checkpoints, every_steps=1, keep=1, async_save=False)


def _take_steps(step, state, batches) -> tuple:
  """(state after `batches`, the training loss of each step)."""
  losses = []
  for batch in batches:
    state, metrics = step.step_fn(state, batch)
    losses.append(float(metrics["training_loss"]))
  return state, losses


def _one_device_side(checkpoints: str) -> dict:
  del checkpoints  # this side saves nothing
  step, batches = _build((1, 1, 1))
  return {"losses": _take_steps(step, step.state, batches)[1]}


def _mesh_side(checkpoints: str) -> dict:
  """Two steps, a save, the third step."""
  step, batches = _build((2, 2, 2))
  state, losses = _take_steps(step, step.state, batches[:2])
  report = {"mlp_in": _layout(_param(state, MLP_IN)), "words": _layout(_param(state, WORDS))}
  checkpointer = _checkpointer(checkpoints)
  checkpointer.save(2, state, force=True)
  checkpointer.close()
  state, [loss] = _take_steps(step, state, batches[2:])
  report.update(losses=losses + [loss],
                continued_mlp_in_sum=_exact_sum(_param(state, MLP_IN)))
  return report


def _resume_side(checkpoints: str) -> dict:
  """A planned (unallocated) state, the restore into it, and the third step."""
  step, batches = _build((2, 2, 2), materialise=False)
  checkpointer = _checkpointer(checkpoints)
  restored_step, state = checkpointer.restore_latest(step.state)
  checkpointer.close()
  report = {"restored_step": restored_step, "mlp_in": _layout(_param(state, MLP_IN))}
  state, [loss] = _take_steps(step, state, batches[2:])
  report.update(loss=loss, mlp_in_sum=_exact_sum(_param(state, MLP_IN)))
  return report


SIDES = {"one": _one_device_side, "mesh": _mesh_side, "resume": _resume_side}


def main(side: str, out: str, checkpoints: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  report = SIDES[side](checkpoints)
  report.update(devices=jax.device_count(), peak_rss_gib=resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss / 2**20)
  with open(out, "w", encoding="utf-8") as f:
    json.dump(report, f)


if __name__ == "__main__":
  sys.path.insert(0, REPO)
  main(*sys.argv[1:])
