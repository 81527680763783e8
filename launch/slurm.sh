#!/bin/bash
#
# Writes an sbatch script that runs the trainer as one JAX process per GPU (or per node)
# and submits it. jax.distributed finds the other processes from SLURM's variables, so
# the trainer needs no coordinator flags.

set -euo pipefail

# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/slurm.sh --config=FILE[:VARIANT] --workdir=DIR [options] [-- MAIN_ARGS...]

Writes LOG_DIR/JOB_NAME.sbatch and submits it with sbatch. The job runs
`srun PYTHON -m pixelbert_jax.main --config=.. --workdir=.. MAIN_ARGS` from the current
directory (which must be visible from the compute nodes, as must the workdir: a shared
filesystem or gs://). Run it from the repository root, in the environment where
pixelbert_jax is installed: sbatch passes the environment on to the job.

Options:
  --config=FILE[:VARIANT]  trainer config, e.g. configs/pretrain.py:X152 (required)
  --workdir=DIR            trainer workdir, shared or gs:// (required)
  --nodes=N                nodes (default 1)
  --gpus-per-node=G        GPUs per node (default 8)
  --per-node               one process per node driving all its GPUs, instead of one
                           process per GPU
  --partition=P            SLURM partition
  --time=T                 time limit, e.g. 2-00:00:00
  --cpus-per-task=C        CPUs per process (input pipeline threads)
  --job-name=NAME          job name (default pixelbert)
  --log-dir=DIR            where the sbatch script and the job's output go
                           (default slurm_logs)
  --sbatch-arg=ARG         any other sbatch option, e.g. --sbatch-arg=--account=abc;
                           repeatable
  --python=PYTHON          interpreter on the compute nodes (default python3)
  --dry-run                print the commands (the script as a here-document) instead
  -h, --help               this help
  -- MAIN_ARGS...          passed to pixelbert_jax.main

Example:
  launch/slurm.sh --config=configs/pretrain.py:X152 --workdir=/shared/runs/x152 \
      --nodes=4 --gpus-per-node=8 --partition=gpu --time=3-00:00:00 \
      -- --config.global_batch_size=4096
EOF
}

config=""
workdir=""
nodes=1
gpus_per_node=8
per_node=0
partition=""
time_limit=""
cpus_per_task=""
job_name="pixelbert"
log_dir="slurm_logs"
sbatch_args=()
python="python3"

# Called by parse_args (common.sh) for each option of this launcher.
parse_option() {
  case "$1" in
    --config) takes_value "$@"; config="$2" ;;
    --workdir) takes_value "$@"; workdir="$2" ;;
    --nodes) takes_value "$@"; nodes="$2" ;;
    --gpus-per-node) takes_value "$@"; gpus_per_node="$2" ;;
    --per-node) per_node=1 ;;
    --partition) takes_value "$@"; partition="$2" ;;
    --time) takes_value "$@"; time_limit="$2" ;;
    --cpus-per-task) takes_value "$@"; cpus_per_task="$2" ;;
    --job-name) takes_value "$@"; job_name="$2" ;;
    --log-dir) takes_value "$@"; log_dir="$2" ;;
    --sbatch-arg) takes_value "$@"; sbatch_args+=("$2") ;;
    --python) takes_value "$@"; python="$2" ;;
    *) unknown_option "$1" ;;
  esac
}

validate_args() {
  require_config_and_workdir "${config}" "${workdir}"
  require_positive_int --nodes "${nodes}"
  require_positive_int --gpus-per-node "${gpus_per_node}"
  [[ -z "${cpus_per_task}" ]] || require_positive_int --cpus-per-task "${cpus_per_task}"
  # #SBATCH lines are split on whitespace by sbatch, not by a shell: no quoting there.
  local value
  for value in "${job_name}" "${partition}" "${time_limit}" "${log_dir}" \
    "${sbatch_args[@]}"; do
    [[ "${value}" != *[[:space:]]* ]] || die "no whitespace allowed in '${value}'"
  done
}

# Prints the #SBATCH lines that lay out the processes.
layout_directives() {
  if ((per_node)); then
    echo "#SBATCH --ntasks-per-node=1"
    echo "#SBATCH --gpus-per-node=${gpus_per_node}"
  else
    # --gpus-per-task needs a task count, not only tasks per node.
    echo "#SBATCH --ntasks=$((nodes * gpus_per_node))"
    echo "#SBATCH --ntasks-per-node=${gpus_per_node}"
    echo "#SBATCH --gpus-per-task=1"
  fi
}

# jax.distributed.initialize() restricts each SLURM process to the GPU numbered
# SLURM_LOCALID, which is wrong both ways we lay processes out; JAX_LOCAL_DEVICE_IDS
# overrides it.
device_ids_line() {
  if ((per_node)); then
    echo "# One process per node drives all of the node's GPUs."
    echo "export JAX_LOCAL_DEVICE_IDS=$(id_range 0 "${gpus_per_node}")"
  else
    echo "# --gpus-per-task=1 binds each task to one GPU, which it sees as device 0."
    echo "export JAX_LOCAL_DEVICE_IDS=0"
  fi
}

# XLA's latency-hiding scheduler overlaps the FSDP all-gathers and the gradients'
# reduce-scatters with compute; NVIDIA's JAX images turn it on, the PyPI wheels do not.
# The job's own XLA_FLAGS come after it, so they win.
xla_flags_line() {
  # shellcheck disable=SC2016  # expanded when the job runs, not here
  echo 'export XLA_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true ${XLA_FLAGS:-}"'
}

# Prints the sbatch script.
sbatch_script() {
  local srun=(srun --kill-on-bad-exit=1) arg
  # srun no longer inherits sbatch's --cpus-per-task (SLURM 23.11): repeat it.
  [[ -z "${cpus_per_task}" ]] || srun+=("--cpus-per-task=${cpus_per_task}")
  main_command "${python}" "${config}" "${workdir}" "${MAIN_ARGS[@]}"
  echo "#!/bin/bash"
  echo "#SBATCH --job-name=${job_name}"
  echo "#SBATCH --nodes=${nodes}"
  layout_directives
  [[ -z "${cpus_per_task}" ]] || echo "#SBATCH --cpus-per-task=${cpus_per_task}"
  [[ -z "${partition}" ]] || echo "#SBATCH --partition=${partition}"
  [[ -z "${time_limit}" ]] || echo "#SBATCH --time=${time_limit}"
  echo "#SBATCH --output=${log_dir}/%x-%j.out"
  for arg in "${sbatch_args[@]}"; do
    echo "#SBATCH ${arg}"
  done
  echo "set -euo pipefail"
  device_ids_line
  xla_flags_line
  quote_command "${srun[@]}" "${MAIN_COMMAND[@]}"
}

main() {
  parse_args "$@"
  validate_args
  local script_file="${log_dir}/${job_name}.sbatch"
  run mkdir -p "${log_dir}"
  if ((DRY_RUN)); then
    echo "cat > $(quote_word "${script_file}") <<'EOF'"
    sbatch_script
    echo "EOF"
  else
    sbatch_script >"${script_file}"
    echo "wrote ${script_file}" >&2
  fi
  run sbatch "${script_file}"
}

main "$@"
