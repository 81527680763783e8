#!/bin/bash
#
# Runs the Beam packer (python -m pixelbert_jax.data.beam_pack) on a runner: this
# machine's DirectRunner, Dataflow, a Flink cluster or a Spark cluster. The packer's
# own arguments follow `--`; this script adds the runner's flags, which Beam's
# PipelineOptions read.

set -euo pipefail

# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/beam_pack.sh --runner=RUNNER [options] -- PACKER_ARGS...

Runs `PYTHON -m pixelbert_jax.data.beam_pack PACKER_ARGS RUNNER_FLAGS` from the current
directory (the repository root: Dataflow installs the package on its workers from
./setup.py). --out and the corpus must be where the workers can read and write them
(gs:// for Dataflow, a shared file system or gs:// for Flink and Spark).

Options:
  --runner=RUNNER       direct, dataflow, flink or spark (required)
  --workers=N           workers: direct processes, Dataflow's max_num_workers, Flink's
                        parallelism (default 2)
  --project=P           dataflow: the GCP project (required)
  --region=R            dataflow: the region, e.g. us-central1 (required)
  --temp-location=URL   dataflow: gs:// folder for temporary files (required)
  --machine-type=T      dataflow: worker machine type (default n2-standard-4)
  --master=HOST:PORT    flink: the JobManager (flink_master); spark: the master
                        (spark_master_url, e.g. spark://host:7077)
  --beam-arg=ARG        any other Beam pipeline option; repeatable
  --python=PYTHON       interpreter (default python3)
  --dry-run             print the command instead of running it
  -h, --help            this help
  -- PACKER_ARGS...     passed to pixelbert_jax.data.beam_pack (--format, --out, ...)

Example:
  launch/beam_pack.sh --runner=dataflow --project=my-project --region=us-central1 \
      --temp-location=gs://my-bucket/tmp --workers=32 -- --format=img2dataset \
      --images=gs://my-bucket/cc3m_wds --out=gs://my-bucket/packed/cc3m \
      --num_shards=256 --max_side=800 --max_skip_fraction=0.2
EOF
}

runner=""
workers=2
project=""
region=""
temp_location=""
machine_type="n2-standard-4"
master=""
beam_args=()
python="python3"

# Called by parse_args (common.sh) for each option of this launcher.
parse_option() {
  case "$1" in
    --runner) takes_value "$@"; runner="$2" ;;
    --workers) takes_value "$@"; workers="$2" ;;
    --project) takes_value "$@"; project="$2" ;;
    --region) takes_value "$@"; region="$2" ;;
    --temp-location) takes_value "$@"; temp_location="$2" ;;
    --machine-type) takes_value "$@"; machine_type="$2" ;;
    --master) takes_value "$@"; master="$2" ;;
    --beam-arg) takes_value "$@"; beam_args+=("$2") ;;
    --python) takes_value "$@"; python="$2" ;;
    *) unknown_option "$1" ;;
  esac
}

parse_args "$@"
require_positive_int --workers "${workers}"
((${#MAIN_ARGS[@]})) || die "no packer arguments after -- (see --help)"

runner_flags=()
case "${runner}" in
  direct)
    runner_flags=(--runner=DirectRunner "--direct_num_workers=${workers}"
                  --direct_running_mode=multi_processing)
    ;;
  dataflow)
    require_option --project "${project}"
    require_option --region "${region}"
    require_option --temp-location "${temp_location}"
    [[ "${temp_location}" == gs://* ]] || die "--temp-location must be gs://, got '${temp_location}'"
    runner_flags=(--runner=DataflowRunner "--project=${project}" "--region=${region}"
                  "--temp_location=${temp_location}" "--max_num_workers=${workers}"
                  "--machine_type=${machine_type}" --setup_file=./setup.py)
    ;;
  flink)
    require_option --master "${master}"
    runner_flags=(--runner=FlinkRunner "--flink_master=${master}"
                  "--parallelism=${workers}" --environment_type=LOOPBACK)
    ;;
  spark)
    require_option --master "${master}"
    runner_flags=(--runner=SparkRunner "--spark_master_url=${master}"
                  --environment_type=LOOPBACK)
    ;;
  "") die "missing --runner (see --help)" ;;
  *) die "--runner must be direct, dataflow, flink or spark, got '${runner}'" ;;
esac

run "${python}" -m pixelbert_jax.data.beam_pack "${MAIN_ARGS[@]}" "${runner_flags[@]}" \
    "${beam_args[@]}"
