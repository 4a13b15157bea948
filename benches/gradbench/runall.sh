#!/bin/bash
# Runs GradBench evals at their default sizes against one tool, one eval after the other.
# Usage (from the root of a GradBench checkout):
#   OUT=DIR [EXTRA="--min-runs 3"] runall.sh TOOLNAME "TOOL COMMAND" EVAL...
# Writes DIR/TOOLNAME_EVAL.jsonl (the session) and DIR/TOOLNAME_EVAL.txt (summary, stderr).
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-out}
name=$1; tool=$2; shift 2
export PYTHONPATH=python/gradbench
mkdir -p "$out"
for e in "$@"; do
  args=""
  # The snapshot has only the first 4096 characters of evals/lstm/data/lstm_full.txt.
  [ "$e" = lstm ] && args="-c 1024 4096"
  args="$args $EXTRA"
  echo "== $e $args ($(date -u +%H:%M:%S))" > "$out/${name}_$e.txt"
  python3 "$here/relay.py" --eval "python3 python/gradbench/gradbench/evals/$e/run.py $args" \
    --tool "$tool" --log "$out/${name}_$e.jsonl" >> "$out/${name}_$e.txt" 2>&1
  echo "== done $(date -u +%H:%M:%S)" >> "$out/${name}_$e.txt"
done
