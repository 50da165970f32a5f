#!/usr/bin/env bash
# Measure the workflow on the live one-node cluster: cluster bring-up time, then the DEFAULT
# config (config.yaml: 48 training jobs) end to end, unpacked (profiles/slurm) and packed
# (profiles/slurm-packed), with wall time and the number of sbatch submissions of each.
# RESTARTS the cluster (tests/slurm/cluster.sh stop/start): do not run it beside the tests.
#   tests/slurm/measure.sh [unpacked|packed|both]      (default both)
# Environment: MEASURE_DIR (work folders, default /tmp/errorless-measure), MEASURE_TIMEOUT (s per
# run, default 3000), PACKED_COMPONENTS (training jobs per group job, default the profile's 16),
# ERRORLESS_SNAKEFILE (workflow under test, default this checkout's Snakefile).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WHICH=${1:-both}
OUTDIR=${MEASURE_DIR:-/tmp/errorless-measure}
TMO=${MEASURE_TIMEOUT:-3000}
SNAKEFILE=${ERRORLESS_SNAKEFILE:-$ROOT/Snakefile}
PY=${PYTHON:-$ROOT/.venv/bin/python}
NCPU=$(nproc)
mkdir -p "$OUTDIR"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

"$ROOT/tests/slurm/cluster.sh" stop >/dev/null
t0=$(now); "$ROOT/tests/slurm/cluster.sh" start; t1=$(now)
echo "RESULT bring-up: $(secs "$t0" "$t1") s (cluster.sh start: config, 3 daemons, node idle, one srun)"

run() {  # $1 = label, $2 = profile, rest = extra flags
  local label=$1 profile=$2; shift 2
  local wd="$OUTDIR/$label"; rm -rf "$wd"; mkdir -p "$wd"
  local a b rc=0
  a=$(now)
  ( cd "$wd" && PATH="$(dirname "$PY"):$PATH" timeout -k 30 "$TMO" "$PY" -m snakemake -s "$SNAKEFILE" -d "$wd" \
      --configfile "$ROOT/config.yaml" --workflow-profile "$ROOT/profiles/slurm" \
      $([ "$profile" = slurm ] || echo --profile "$ROOT/profiles/$profile") \
      --latency-wait 5 --slurm-init-seconds-before-status-checks 2 --seconds-between-status-checks 2 \
      "$@" ) > "$wd/snakemake.log" 2>&1 || rc=$?
  b=$(now)
  local subs steps
  subs=$(grep -c 'has been submitted with SLURM jobid' "$wd/snakemake.log" || true)
  steps=$(grep -o '[0-9]* of [0-9]* steps ([0-9]*%) done' "$wd/snakemake.log" | tail -1)
  echo "RESULT $label: rc=$rc wall=$(secs "$a" "$b") s sbatch=$subs steps='$steps' log=$wd/snakemake.log"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    grep -o 'SLURM run ID: \S*' "$wd/snakemake.log" | awk '{print $4}' | sort -u | xargs -r -n1 scancel --name
  fi
}

case "$WHICH" in
  unpacked|both) run unpacked slurm ;;&
  packed|both) run packed slurm-packed --cores "$NCPU" ${PACKED_COMPONENTS:+--group-components fnn=$PACKED_COMPONENTS} ;;
esac
