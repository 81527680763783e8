#!/bin/bash
#
# Runs N JAX processes of the trainer on this machine, joined through a coordinator on
# localhost: a rehearsal of a multi-host run (CPU devices) or a multi-GPU workstation.

set -euo pipefail

# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/local.sh --config=FILE[:VARIANT] --workdir=DIR [options] [-- MAIN_ARGS...]

Starts NUM processes of `python -m pixelbert_jax.main` in the current directory, each
with --coordinator_address=localhost:PORT --num_processes=NUM --process_id=I, writes
each one's output to LOG_DIR/process_I.log, waits for all of them and exits non-zero if
any failed (stopping the others with SIGTERM, on which they save a checkpoint).
Ctrl-C is passed on to the processes the same way.

Options:
  --config=FILE[:VARIANT]  trainer config, e.g. configs/pretrain.py:demo (required)
  --workdir=DIR            trainer workdir, local or gs:// (required)
  --num-processes=NUM      number of processes (default 2)
  --cpu-devices=D          run on CPU with D devices per process: sets JAX_PLATFORMS=cpu
                           and XLA_FLAGS=--xla_force_host_platform_device_count=D
  --gpus-per-process=K     give process I the GPUs I*K .. I*K+K-1 (JAX_LOCAL_DEVICE_IDS)
  --port=PORT              coordinator port (default: a free one)
  --log-dir=DIR            where the per-process logs go (default WORKDIR/logs; needed
                           for a gs:// workdir)
  --python=PYTHON          interpreter (default python3)
  --dry-run                print the commands instead of running them
  -h, --help               this help
  -- MAIN_ARGS...          passed to pixelbert_jax.main, e.g. --config.num_train_steps=10

Example:
  launch/local.sh --config=configs/pretrain.py:demo --workdir=/tmp/demo2 \
      --num-processes=2 --cpu-devices=4 -- --config.num_train_steps=100
EOF
}

config=""
workdir=""
num_processes=2
cpu_devices=""
gpus_per_process=""
port=""
log_dir=""
python="python3"

# Called by parse_args (common.sh) for each option of this launcher.
parse_option() {
  case "$1" in
    --config) takes_value "$@"; config="$2" ;;
    --workdir) takes_value "$@"; workdir="$2" ;;
    --num-processes) takes_value "$@"; num_processes="$2" ;;
    --cpu-devices) takes_value "$@"; cpu_devices="$2" ;;
    --gpus-per-process) takes_value "$@"; gpus_per_process="$2" ;;
    --port) takes_value "$@"; port="$2" ;;
    --log-dir) takes_value "$@"; log_dir="$2" ;;
    --python) takes_value "$@"; python="$2" ;;
    *) unknown_option "$1" ;;
  esac
}

validate_args() {
  require_config_and_workdir "${config}" "${workdir}"
  require_positive_int --num-processes "${num_processes}"
  [[ -z "${cpu_devices}" ]] || require_positive_int --cpu-devices "${cpu_devices}"
  [[ -z "${gpus_per_process}" ]] || require_positive_int --gpus-per-process "${gpus_per_process}"
  [[ -z "${port}" ]] || require_positive_int --port "${port}"
  if [[ -n "${cpu_devices}" && -n "${gpus_per_process}" ]]; then
    die "--cpu-devices and --gpus-per-process exclude each other"
  fi
  if [[ -z "${log_dir}" ]]; then
    # Shell redirections cannot write to a bucket.
    [[ "${workdir}" != gs://* ]] || die "a gs:// workdir needs --log-dir=LOCAL_DIR"
    log_dir="${workdir}/logs"
  fi
}

# Prints a port nothing listens on: bash's /dev/tcp connects only where something does.
free_port() {
  local candidate
  while true; do
    candidate=$((20000 + RANDOM % 40000))
    if ! (: <"/dev/tcp/127.0.0.1/${candidate}") 2>/dev/null; then
      echo "${candidate}"
      return
    fi
  done
}

# Prints XLA_FLAGS as inherited, less any device count, plus the one asked for: XLA
# rejects a flag given twice.
cpu_xla_flags() {
  local inherited=() kept=() flag
  read -ra inherited <<<"${XLA_FLAGS:-}"
  for flag in "${inherited[@]}"; do
    [[ "${flag}" == --xla_force_host_platform_device_count=* ]] || kept+=("${flag}")
  done
  kept+=("--xla_force_host_platform_device_count=${cpu_devices}")
  echo "${kept[*]}"
}

# Stores process $1's command, environment included, in the array COMMAND.
process_command() {
  local id="$1" env_vars=()
  if [[ -n "${cpu_devices}" ]]; then
    env_vars+=(JAX_PLATFORMS=cpu "XLA_FLAGS=$(cpu_xla_flags)")
  fi
  if [[ -n "${gpus_per_process}" ]]; then
    env_vars+=("JAX_LOCAL_DEVICE_IDS=$(id_range $((id * gpus_per_process)) "${gpus_per_process}")")
  fi
  main_command "${python}" "${config}" "${workdir}" \
    "--coordinator_address=localhost:${port}" "--num_processes=${num_processes}" \
    "--process_id=${id}" "${MAIN_ARGS[@]}"
  COMMAND=()
  if ((${#env_vars[@]})); then
    COMMAND=(env "${env_vars[@]}")
  fi
  COMMAND+=("${MAIN_COMMAND[@]}")
}

PIDS=()

# Sends SIGTERM to the processes still running, so that they checkpoint and exit.
stop_running() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "${pid}" 2>/dev/null || true
  done
}

start_processes() {
  local id log
  run mkdir -p "${log_dir}"
  for ((id = 0; id < num_processes; id++)); do
    process_command "${id}"
    log="${log_dir}/process_${id}.log"
    # Not `run`: the redirection and the `&` belong in the line shown too.
    show_command "$(quote_command "${COMMAND[@]}") > $(quote_word "${log}") 2>&1 &"
    if ((!DRY_RUN)); then
      "${COMMAND[@]}" >"${log}" 2>&1 &
      PIDS+=("$!")
    fi
  done
}

# Waits for every process; after the first failure stops the rest. Polls rather than
# `wait -n` so that each exit status is known by process id.
wait_for_processes() {
  local running=("${!PIDS[@]}") still failed=() id status stopped=0
  while ((${#running[@]})); do
    still=()
    for id in "${running[@]}"; do
      if kill -0 "${PIDS[id]}" 2>/dev/null; then
        still+=("${id}")
        continue
      fi
      status=0
      wait "${PIDS[id]}" || status=$?
      if ((status && stopped)); then
        echo "process ${id} stopped (status ${status})" >&2
      elif ((status)); then
        echo "process ${id} exited with status ${status}; log: ${log_dir}/process_${id}.log" >&2
        failed+=("${id}")
      fi
    done
    running=("${still[@]}")
    if ((${#failed[@]} && ${#running[@]} && !stopped)); then
      echo "stopping the other processes" >&2
      stop_running
      stopped=1
    fi
    ((${#running[@]} == 0)) || sleep 1
  done
  if ((${#failed[@]})); then
    for id in "${failed[@]}"; do
      echo "--- last lines of ${log_dir}/process_${id}.log" >&2
      tail -n 20 "${log_dir}/process_${id}.log" >&2
    done
    exit 1
  fi
  echo "all ${num_processes} processes finished; logs in ${log_dir}" >&2
}

main() {
  parse_args "$@"
  validate_args
  [[ -n "${port}" ]] || port="$(free_port)"
  start_processes
  if ((!DRY_RUN)); then
    trap stop_running INT TERM
    wait_for_processes
  fi
}

main "$@"
