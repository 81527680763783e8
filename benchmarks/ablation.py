r"""The paper's pre-training ablation (its Table 5) at demo size on the synthetic world.

Pre-trains the demo model four ways — MLM only, ITM only, MLM + ITM, and MLM + ITM
without random pixel sampling — then fine-tunes each, and a run without pre-training,
on VQA, NLVR2 and retrieval, all through `python -m pixelbert_jax.main` with the demo
configs. Every run starts from the same synthetic backbone (the demos' ImageNet), so
"no pre-training" means what it means in the paper: no cross-modal pre-training.

  python benchmarks/ablation.py --out=/tmp/pixelbert_ablation      # about 2 h, 2 cores

Runs that finished (their `final_eval.json` exists) are not run again, so an
interrupted ablation continues where it stopped. The table goes to stdout and to
`benchmarks/results/ablation.md`.
"""

import json
import os
import subprocess
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("out", "/tmp/pixelbert_ablation", "Folder for every run's workdir.")
flags.DEFINE_integer("pretrain_steps", 2000, "Pre-training steps (the demo's 2000).")
flags.DEFINE_list("variants", [], "A subset of the pre-training variants (default all).")
flags.DEFINE_list("tasks", ["vqa", "nlvr2", "retrieval"], "Fine-tuning tasks.")
flags.DEFINE_list("extra", [], "More --config overrides for every run, e.g. seed=1.")
flags.DEFINE_string("results", os.path.join(REPO, "benchmarks/results/ablation.md"),
                    "Where the markdown table goes ('' for stdout only).")
FLAGS = flags.FLAGS

# Pre-training variant -> overrides of configs/pretrain.py:demo (None: no pre-training).
VARIANTS = {
    "no pre-training": None,
    "MLM": {"objectives.itm": False},
    "ITM": {"objectives.mlm": False},
    "MLM + ITM": {},
    "MLM + ITM (all pixels)": {"num_sampled_pixels": 0},
}
# Task -> (config, {metric the table shows: its column title}).
TASKS = {
    "vqa": ("configs/vqa.py:demo", {"vqa/accuracy": "VQA acc."}),
    "nlvr2": ("configs/nlvr2.py:demo", {"nlvr2/accuracy": "NLVR2 acc."}),
    "retrieval": ("configs/retrieval.py:demo", {"retrieval/full/t2i_r1": "IR R@1",
                                                "retrieval/full/i2t_r1": "TR R@1"}),
}
# The paper's Table 5 (R50), as ../shared/RECIPE.md summarises it: what each part adds.
PAPER_DIRECTION = {
    "no pre-training": "the baseline every gain is measured from",
    "MLM": "MLM adds about +7.6 VQA; NLVR2 does not converge without MLM",
    "ITM": "ITM adds about +1.6 VQA and at least +13 retrieval R@1",
    "MLM + ITM": "best on every task",
    "MLM + ITM (all pixels)": "below MLM + ITM: sampling adds about +0.5 VQA, +2 "
                              "retrieval R@1, +0.4 NLVR2",
}


def _slug(name: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def run_main(config: str, workdir: str, overrides: dict) -> dict:
  """One run of the real entry point (skipped when finished before); its final eval."""
  result = os.path.join(workdir, "final_eval.json")
  if not os.path.exists(result):
    command = [sys.executable, "-m", "pixelbert_jax.main", f"--config={config}",
               f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in overrides.items()]
    start = time.time()
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    with open(workdir + ".log", "w") as log:
      done = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
      raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}); see {log.name}")
    print(f"  {workdir}: {time.time() - start:.0f} s", flush=True)
  with open(result) as f:
    return json.load(f)


def common_overrides(out: str) -> dict:
  """Every run shares one synthetic world (and so one synthetic backbone)."""
  extra = dict(item.split("=", 1) for item in FLAGS.extra)
  return {"data.root": os.path.join(out, "world"), **extra}


def run_variant(name: str, overrides: dict | None, out: str) -> dict:
  """Pre-trains (unless `overrides` is None), then fine-tunes every task; their metrics."""
  common = common_overrides(out)
  folder = os.path.join(out, _slug(name))
  init_from = {}
  if overrides is not None:
    pretrain = os.path.join(folder, "pretrain")
    run_main("configs/pretrain.py:demo", pretrain,
             {**common, "num_train_steps": FLAGS.pretrain_steps, **overrides})
    init_from = {"init_from": pretrain}
  row = {}
  for task in FLAGS.tasks:
    config, metrics = TASKS[task]
    results = run_main(config, os.path.join(folder, task), {**common, **init_from})
    row.update({metric: results[metric] for metric in metrics})
  return row


def table(rows: dict) -> str:
  columns = {m: title for t in FLAGS.tasks for m, title in TASKS[t][1].items()}
  lines = ["| pre-training | " + " | ".join(columns.values()) + " | paper's direction |",
           "| --- |" + " --- |" * (len(columns) + 1)]
  for name, row in rows.items():
    cells = [f"{row[m]:.1f}" for m in columns]
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {PAPER_DIRECTION[name]} |")
  return "\n".join(lines)


def main(argv):
  del argv
  names = FLAGS.variants or list(VARIANTS)
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    raise app.UsageError(f"Unknown variants {unknown}; choose from {list(VARIANTS)}")
  start, rows = time.time(), {}
  for name in names:
    print(f"{name}:", flush=True)
    rows[name] = run_variant(name, VARIANTS[name], FLAGS.out)
  report = (f"`python benchmarks/ablation.py --out={FLAGS.out} --pretrain_steps="
            f"{FLAGS.pretrain_steps}` — {time.strftime('%Y-%m-%d')}, "
            f"{time.time() - start:.0f} s in this invocation\n\n{table(rows)}\n")
  print(report)
  if FLAGS.results:
    with open(FLAGS.results, "w") as f:
      f.write(report)


if __name__ == "__main__":
  app.run(main)
