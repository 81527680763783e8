"""Multi-process start-up: one JAX process per host (TPU pods) or per GPU / node (SLURM).

`jax.distributed.initialize()` detects Cloud TPU pods and SLURM by itself; elsewhere the
coordinator comes from flags or from the environment variables JAX documents
(`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`). CPU-only runs use gloo
for cross-process collectives.
"""

import os

import jax
from absl import flags, logging

flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", None, "Number of JAX processes.")
flags.DEFINE_integer("process_id", None, "This process's index.")

FLAGS = flags.FLAGS


def _launched_by_cluster() -> bool:
  """True where jax can find the other processes on its own."""
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  tpu_pod = "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return slurm or tpu_pod or "JAX_COORDINATOR_ADDRESS" in os.environ


def initialize() -> None:
  """Initialises jax.distributed when launched as several processes; no-op otherwise."""
  explicit = FLAGS.coordinator_address is not None
  if not explicit and not _launched_by_cluster():
    return
  if os.environ.get("JAX_PLATFORMS", "") == "cpu" or not _has_accelerator_env():
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = {}
  if explicit:
    kwargs = dict(coordinator_address=FLAGS.coordinator_address,
                  num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  jax.distributed.initialize(**kwargs)
  logging.info("Process %d of %d; %d local and %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def _has_accelerator_env() -> bool:
  return any(k in os.environ for k in ("TPU_WORKER_HOSTNAMES", "CUDA_VISIBLE_DEVICES",
                                       "SLURM_GPUS_ON_NODE"))


def hide_accelerators_from_tensorflow() -> None:
  """clu's summary writer imports TensorFlow; keep it off the GPUs / TPUs."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  tf.config.set_visible_devices([], "GPU")
  tf.config.set_visible_devices([], "TPU")
