#!/usr/bin/env bash
# Run every registered method on the embedded benchmark with one budget and one seed, then
# print the comparison table. Extra arguments go to every `pebench run` (e.g. --steps 600).
#
#     bash benchmarks/all_methods.sh OUT_DIR [pebench run options...]
set -euo pipefail
out=${1:?usage: bash benchmarks/all_methods.sh OUT_DIR [pebench run options...]}
shift
methods=$(python -c "from pebench.method import METHODS; print(' '.join(METHODS.names()))")
for method in $methods; do
    TIMEFORMAT="$method: %R s wall"
    time pebench run --method "$method" --out "$out" --quiet "$@"
done
pebench compare --results "$out"
