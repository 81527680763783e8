#!/bin/bash
#
# Creates a Cloud TPU VM (a pod slice or a single host), installs pixelbert_jax on every
# worker, starts the trainer on all workers at once and follows its log. Every worker
# runs the same command: jax.distributed detects the pod by itself, so the trainer needs
# no coordinator flags.

set -euo pipefail

# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh COMMAND --name=NAME --zone=ZONE [options] [-- MAIN_ARGS...]

Commands:
  create   create the TPU VM (`gcloud compute tpus tpu-vm create`, or a queued resource
           with --queued, which waits for capacity)
  install  on every worker: put the code in ~/REMOTE_DIR (a copy of --source, or a git
           clone), make a Python venv there with uv and `pip install -e . jax[tpu]`
  train    on every worker: start `python -m pixelbert_jax.main --config=..
           --workdir=gs://.. MAIN_ARGS` under nohup, output to ~/REMOTE_DIR/train.log;
           refuses to start a second run while one is going
  logs     follow the train.log of worker 0 (or --worker)
  stop     send SIGTERM to the trainer on every worker (it saves a checkpoint and exits)
  delete   delete the TPU VM (or the queued resource with --queued)
  all      create (waiting until a queued resource is active), install, train

Options:
  --name=NAME              TPU VM (and queued resource) name (required)
  --zone=ZONE              zone, e.g. us-west4-a (required)
  --project=PROJECT        Google Cloud project (default: gcloud's)
  --accelerator-type=TYPE  e.g. v5litepod-64, v4-32 (create)
  --version=RUNTIME        TPU software version, e.g. v2-alpha-tpuv5-lite (create)
  --queued                 use `gcloud compute tpus queued-resources`
  --spot                   spot capacity (create)
  --source=SOURCE          what install puts on the workers: a local checkout
                           (default: the repository holding this script), a git URL
                           (https://, ssh://, git@, git+...) or a local wheel (*.whl;
                           the configs come from this repository)
  --ref=REF                git commit, tag or origin/BRANCH to check out (git source;
                           default origin/HEAD)
  --remote-dir=DIR         directory on the workers, relative to the home directory
                           (default pixelbert_jax)
  --python-version=X.Y     Python of the workers' venv (default 3.11)
  --config=FILE[:VARIANT]  trainer config, relative to REMOTE_DIR (train)
  --workdir=gs://...       trainer workdir; a bucket, as every worker must see it (train)
  --env=KEY=VALUE          environment variable for the trainer; repeatable (train)
  --worker=N               worker whose log `logs` follows (default 0)
  --dry-run                print the commands instead of running them
  -h, --help               this help
  -- MAIN_ARGS...          passed to pixelbert_jax.main (train)

Example:
  launch/tpu_pod.sh all --name=pb --zone=us-west4-a --accelerator-type=v5litepod-64 \
      --version=v2-alpha-tpuv5-lite --config=configs/pretrain.py:X152 \
      --workdir=gs://my-bucket/runs/x152 -- --config.data.root=gs://my-bucket/data
  launch/tpu_pod.sh logs --name=pb --zone=us-west4-a
EOF
}

readonly REMOTE_ARCHIVE="pixelbert_jax-src.tar.gz"

command=""
name=""
zone=""
project=""
accelerator_type=""
version=""
queued=0
spot=0
source_spec="${REPO_ROOT}"
ref="origin/HEAD"
remote_dir="pixelbert_jax"
python_version="3.11"
config=""
workdir=""
env_vars=()
worker=0

# Called by parse_args (common.sh) for each option of this launcher, and for COMMAND.
parse_option() {
  case "$1" in
    --name) takes_value "$@"; name="$2" ;;
    --zone) takes_value "$@"; zone="$2" ;;
    --project) takes_value "$@"; project="$2" ;;
    --accelerator-type) takes_value "$@"; accelerator_type="$2" ;;
    --version) takes_value "$@"; version="$2" ;;
    --queued) queued=1 ;;
    --spot) spot=1 ;;
    --source) takes_value "$@"; source_spec="$2" ;;
    --ref) takes_value "$@"; ref="$2" ;;
    --remote-dir) takes_value "$@"; remote_dir="$2" ;;
    --python-version) takes_value "$@"; python_version="$2" ;;
    --config) takes_value "$@"; config="$2" ;;
    --workdir) takes_value "$@"; workdir="$2" ;;
    --env) takes_value "$@"; env_vars+=("$2") ;;
    --worker) takes_value "$@"; worker="$2" ;;
    -*) unknown_option "$1" ;;
    *)
      [[ -z "${command}" ]] || die "unexpected argument '$1' (see --help)"
      command="$1"
      ;;
  esac
}

# Prints what --source names: dir, git or wheel.
source_kind() {
  case "${source_spec}" in
    *.whl) echo wheel ;;
    http://* | https://* | ssh://* | git://* | git@* | git+*) echo git ;;
    *) echo dir ;;
  esac
}

validate_create() {
  require_option --accelerator-type "${accelerator_type}"
  require_option --version "${version}"
}

validate_install() {
  case "$(source_kind)" in
    dir)
      [[ -f "${source_spec}/setup.py" ]] \
        || die "--source=${source_spec} is not a checkout of pixelbert_jax (no setup.py)"
      ;;
    wheel) [[ -f "${source_spec}" ]] || die "wheel ${source_spec} not found" ;;
    git) ;;
  esac
}

validate_train() {
  require_option --config "${config}"
  require_option --workdir "${workdir}"
  # Each worker has its own disk: checkpoints written there could not be restored.
  [[ "${workdir}" == gs://* ]] \
    || die "--workdir must be a gs:// path on a TPU VM (every worker must see it), got '${workdir}'"
  local var
  for var in "${env_vars[@]}"; do
    [[ "${var}" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants KEY=VALUE, got '${var}'"
  done
}

require_worker_number() {
  [[ "${worker}" =~ ^[0-9]+$ ]] || die "--worker must be a worker number, got '${worker}'"
}

# Checks everything the command needs before anything runs, so that `all` cannot stop
# half-way (say, with a TPU created and no workdir).
validate_args() {
  require_option COMMAND "${command}"
  require_option --name "${name}"
  require_option --zone "${zone}"
  case "${command}" in
    create) validate_create ;;
    delete | stop) ;;
    install) validate_install ;;
    train) validate_train ;;
    logs) require_worker_number ;;
    all) validate_create; validate_install; validate_train ;;
    *) die "unknown command '${command}' (see --help)" ;;
  esac
  if ((${#MAIN_ARGS[@]})) && [[ "${command}" != train && "${command}" != all ]]; then
    die "arguments after -- are for the trainer: only train and all take them"
  fi
}

# Flags every gcloud command takes.
location_flags() {
  LOCATION=("--zone=${zone}")
  [[ -z "${project}" ]] || LOCATION+=("--project=${project}")
}

# Runs the shell command $2 on worker(s) $1 over ssh.
on_workers() {
  run gcloud compute tpus tpu-vm ssh "${name}" "${LOCATION[@]}" "--worker=$1" \
    "--command=$2"
}

create_tpu() {
  local extra=()
  ((!spot)) || extra+=(--spot)
  if ((queued)); then
    run gcloud compute tpus queued-resources create "${name}" "${LOCATION[@]}" \
      "--node-id=${name}" "--accelerator-type=${accelerator_type}" \
      "--runtime-version=${version}" "${extra[@]}"
  else
    run gcloud compute tpus tpu-vm create "${name}" "${LOCATION[@]}" \
      "--accelerator-type=${accelerator_type}" "--version=${version}" "${extra[@]}"
  fi
}

# A queued resource is created at once but gets its TPU only when capacity frees up.
wait_until_active() {
  local describe=(gcloud compute tpus queued-resources describe "${name}"
                  "${LOCATION[@]}" "--format=value(state.state)") state
  if ((DRY_RUN)); then
    run "${describe[@]}"
    return
  fi
  while true; do
    state="$(run "${describe[@]}")"
    case "${state}" in
      ACTIVE) return ;;
      FAILED | SUSPENDED) die "queued resource ${name} is ${state}" ;;
    esac
    echo "queued resource ${name} is ${state:-not ready}; checking again in 60 s" >&2
    sleep 60
  done
}

# Packs the local checkout (or the wheel plus this repository's configs, which the
# trainer reads from its working directory) and copies it to every worker.
copy_source() {
  local archive="${TMPDIR:-/tmp}/${name}-${REMOTE_ARCHIVE}"
  if [[ "$(source_kind)" == wheel ]]; then
    run tar -czf "${archive}" -C "${REPO_ROOT}" configs \
      -C "$(dirname "${source_spec}")" "$(basename "${source_spec}")"
  else
    run tar -czf "${archive}" --exclude=.git --exclude=.venv --exclude='.venv-*' \
      --exclude=__pycache__ --exclude='*.egg-info' --exclude=.pytest_cache \
      --exclude=slurm_logs -C "${source_spec}" .
  fi
  run gcloud compute tpus tpu-vm scp "${archive}" "${name}:${REMOTE_ARCHIVE}" \
    "${LOCATION[@]}" --worker=all
}

# Prints the worker-side shell commands that put the code in place.
fetch_source_script() {
  local dir
  dir="$(quote_word "${remote_dir}")"
  if [[ "$(source_kind)" == git ]]; then
    local url="${source_spec#git+}"
    echo "if [ ! -d ${dir}/.git ]; then git clone $(quote_word "${url}") ${dir}; fi"
    echo "git -C ${dir} fetch origin"
    echo "git -C ${dir} checkout --detach $(quote_word "${ref}")"
  else
    echo "mkdir -p ${dir}"
    echo "tar -xzf ${REMOTE_ARCHIVE} -C ${dir}"
    echo "rm ${REMOTE_ARCHIVE}"
  fi
}

# Prints the worker-side shell commands that make the venv. The TPU images' system
# Python can be older than the 3.11 pixelbert_jax needs; uv brings its own. The $
# expressions are for the workers' shell: single quotes keep them from ours.
# shellcheck disable=SC2016
venv_script() {
  local package="-e ."
  if [[ "$(source_kind)" == wheel ]]; then
    package="$(quote_word "./$(basename "${source_spec}")")"
  fi
  echo 'export PATH="$HOME/.local/bin:$PATH"'
  echo 'command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh'
  echo "cd $(quote_word "${remote_dir}")"
  echo "[ -x .venv/bin/python ] || uv venv --python $(quote_word "${python_version}") .venv"
  echo "uv pip install --python .venv/bin/python ${package} 'jax[tpu]'"
}

# Joins the lines on stdin into one `set -e` shell command. A line sent to the
# background already ends in its separator, `&`: a `;` after it would be an error.
one_line() {
  local joined="set -e" line
  while IFS= read -r line; do
    if [[ "${joined}" == *"&" ]]; then
      joined+=" ${line}"
    else
      joined+="; ${line}"
    fi
  done
  echo "${joined}"
}

install() {
  [[ "$(source_kind)" == git ]] || copy_source
  on_workers all "$( { fetch_source_script; venv_script; } | one_line)"
}

# Prints the worker-side shell commands that start the trainer in the background
# ($ expressions: as above).
# shellcheck disable=SC2016
train_script() {
  local trainer=(nohup)
  ((${#env_vars[@]} == 0)) || trainer+=(env "${env_vars[@]}")
  main_command .venv/bin/python "${config}" "${workdir}" "${MAIN_ARGS[@]}"
  trainer+=("${MAIN_COMMAND[@]}")
  echo "cd $(quote_word "${remote_dir}")"
  echo 'if [ -f train.pid ] && kill -0 "$(cat train.pid)" 2>/dev/null; then' \
    'echo "$(hostname): already training (pid $(cat train.pid)); stop it first" >&2;' \
    'exit 1; fi'
  # Appending keeps the log of earlier attempts, which resume from the same workdir.
  echo "$(quote_command "${trainer[@]}") >> train.log 2>&1 < /dev/null &"
  echo 'echo $! > train.pid'
  echo 'echo "$(hostname): started pid $(cat train.pid)"'
}

train() {
  on_workers all "$(train_script | one_line)"
}

logs() {
  on_workers "${worker}" "tail -n 200 -F $(quote_word "${remote_dir}/train.log")"
}

# SIGTERM, not SIGKILL: the trainer saves a checkpoint first ($ expressions: as above).
# shellcheck disable=SC2016
stop() {
  local script
  script="cd $(quote_word "${remote_dir}")"$'\n'
  script+='if [ -f train.pid ] && kill "$(cat train.pid)" 2>/dev/null; then'
  script+=' echo "$(hostname): sent SIGTERM to pid $(cat train.pid)";'
  script+=' else echo "$(hostname): not training"; fi'
  on_workers all "$(one_line <<<"${script}")"
}

delete() {
  if ((queued)); then
    # --force deletes the TPU VM along with the queued resource.
    run gcloud compute tpus queued-resources delete "${name}" "${LOCATION[@]}" --force
  else
    run gcloud compute tpus tpu-vm delete "${name}" "${LOCATION[@]}"
  fi
}

main() {
  parse_args "$@"
  validate_args
  location_flags
  case "${command}" in
    create) create_tpu ;;
    install) install ;;
    train) train ;;
    logs) logs ;;
    stop) stop ;;
    delete) delete ;;
    all)
      create_tpu
      ((!queued)) || wait_until_active
      install
      train
      ;;
  esac
}

main "$@"
