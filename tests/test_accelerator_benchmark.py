"""benchmarks/accelerator.py runs end to end at demo size on the CPU with TensorFlow
unimportable (a device image need not have it), so that a lent device spends its minutes
measuring, not debugging."""

import json
import math
import os
import subprocess
import sys

from conftest import REPO


def test_accelerator_benchmark_runs_tiny_without_tensorflow(tmp_path):
  blocked = tmp_path / "blocked" / "tensorflow"
  blocked.mkdir(parents=True)
  (blocked / "__init__.py").write_text(
      'raise ImportError("TensorFlow is not in the device image")\n')
  # One CPU device, as on the device machine; the suite's 8 fake ones would split the
  # batch of 4.
  env = dict(os.environ, PYTHONPATH=str(tmp_path / "blocked"), XLA_FLAGS="",
             JAX_PLATFORMS="cpu")
  out = tmp_path / "out"
  done = subprocess.run(
      [sys.executable, os.path.join(REPO, "benchmarks", "accelerator.py"), "--tiny",
       f"--out={out}"], env=env, capture_output=True, text=True, timeout=1200, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads((out / "accelerator.json").read_text())
  rows = result["rows"]
  assert [row["kind"] for row in rows] == ["train", "train", "score", "forward", "input"]
  assert not [row for row in rows if "error" in row], done.stderr[-3000:]
  train = rows[:2]
  assert [row["remat"] for row in train] == ["none", "full"]
  assert all(row["step_s"] > 0 and row["memory"] > 0 and math.isfinite(row["loss"])
             for row in train)
  assert all(row["rate"] > 0 for row in rows[2:])
  assert "| train | batch 4, remat full |" in (out / "accelerator.md").read_text()
