# shellcheck shell=bash
#
# What the launchers (tpu_pod.sh, slurm.sh, local.sh) have in common: parsing the command
# line, checking option values, quoting, and running or printing commands. Sourced, not
# run: each launcher sources it from its own directory, so that it is found from any
# working directory, and defines the two functions parse_args calls back, `usage` and
# `parse_option`.
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

# The trainer's own arguments: whatever follows `--` on the launcher's command line.
MAIN_ARGS=()

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

# Shows the command line $1 (already quoted): under --dry-run as the output itself, else
# on stderr after "+ ", so that logs show what ran.
show_command() {
  if ((DRY_RUN)); then
    printf '%s\n' "$1"
  else
    printf '+ %s\n' "$1" >&2
  fi
}

# Runs a command, or only shows it under --dry-run.
run() {
  show_command "$(quote_command "$@")"
  ((DRY_RUN)) || "$@"
}

# Parses the launcher's command line. Splits `--opt=value` into `--opt value`, so that
# both forms work, and handles what every launcher takes: --dry-run, -h/--help, and `--`
# before MAIN_ARGS. Any other argument goes, with the rest of the line after it, to the
# launcher's parse_option, which sets its variable or dies. TAKEN is how many arguments
# that used: 1, or 2 for an option whose value is $2 (parse_option calls takes_value).
parse_args() {
  while (($#)); do
    if [[ "$1" == --*=* ]]; then
      set -- "${1%%=*}" "${1#*=}" "${@:2}"
    fi
    case "$1" in
      --dry-run) DRY_RUN=1; shift ;;
      -h | --help) usage; exit 0 ;;
      --) shift; MAIN_ARGS=("$@"); break ;;
      *)
        TAKEN=1
        parse_option "$@"
        shift "${TAKEN}"
        ;;
    esac
  done
}

# For parse_option: the option in $1 takes a value, $2; fails when there is none ($#
# counts the option and what follows it).
takes_value() {
  (($# >= 2)) || die "option $1 needs a value"
  TAKEN=2
}

# For parse_option, on an argument it does not know.
unknown_option() {
  die "unknown option '$1' (see --help)"
}

# Fails unless $2 is a positive integer; $1 names the option for the message.
require_positive_int() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

# Fails when a required option was not given; $1 is the option, $2 its value.
require_option() {
  [[ -n "$2" ]] || die "missing $1 (see --help)"
}

# Fails unless --config ($1) and --workdir ($2) were given and the config file (without
# its :variant) exists here, for launchers whose processes start in this directory: a
# typo then shows up before any process starts.
require_config_and_workdir() {
  require_option --config "$1"
  require_option --workdir "$2"
  local file="${1%%:*}"
  [[ -f "${file}" ]] || die "config file '${file}' not found (relative to $(pwd))"
}

# Prints the $2 numbers from $1 on, comma-separated: GPU ids for JAX_LOCAL_DEVICE_IDS.
id_range() {
  local ids=() id
  for ((id = $1; id < $1 + $2; id++)); do
    ids+=("${id}")
  done
  local IFS=,
  echo "${ids[*]}"
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
