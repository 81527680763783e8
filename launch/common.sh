# shellcheck shell=bash
#
# Helpers shared by the launchers (tpu_pod.sh, slurm.sh, local.sh); sourced, not run.
#
# Every launcher builds each command as an argument array and hands it to `run`, so that
# `--dry-run` prints exactly what would otherwise be executed, one command per line, in a
# form a shell reads back into the same arguments.

# The repository this copy of the launchers belongs to (used by the scripts that source
# this file, hence SC2034 below).
# shellcheck disable=SC2034
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT

# Set to 1 by `--dry-run`.
DRY_RUN=0

# Prints an error and exits with the usage status (2), like argument parsers do.
die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

# Prints one word so that a POSIX shell reads it back unchanged: bare when it holds only
# characters no shell treats specially, single-quoted otherwise.
quote_word() {
  local word="$1"
  if [[ -n "${word}" && "${word}" != *[!A-Za-z0-9_./:=,@%+-]* ]]; then
    printf '%s' "${word}"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

# Prints a command's arguments as one shell line.
quote_command() {
  local words=() word
  for word in "$@"; do
    words+=("$(quote_word "${word}")")
  done
  printf '%s\n' "${words[*]}"
}

# Runs a command, or only prints it under --dry-run. Real runs echo it to stderr first so
# that logs show what ran.
run() {
  if ((DRY_RUN)); then
    quote_command "$@"
  else
    echo "+ $(quote_command "$@")" >&2
    "$@"
  fi
}

# Fails unless the option in $1 was given a value ($# counts the option and its value).
require_value() {
  (($# >= 2)) || die "option $1 needs a value"
}

# Fails unless $2 is a positive integer; $1 names the option for the message.
require_positive_int() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

# Fails when a required option was not given; $1 is the option, $2 its value.
require_option() {
  [[ -n "$2" ]] || die "missing $1 (see --help)"
}

# Fails when the config file (without its :variant) does not exist here, so that a typo
# shows up before any process starts.
require_config_file() {
  local file="${1%%:*}"
  [[ -f "${file}" ]] || die "config file '${file}' not found (relative to $(pwd))"
}

# The trainer's command line: `PYTHON -m pixelbert_jax.main --config=.. --workdir=.. ARGS`.
# Stores it in the array MAIN_COMMAND, which the caller reads.
main_command() {
  local python="$1" config="$2" workdir="$3"
  shift 3
  # shellcheck disable=SC2034
  MAIN_COMMAND=("${python}" -m pixelbert_jax.main "--config=${config}"
                "--workdir=${workdir}" "$@")
}
