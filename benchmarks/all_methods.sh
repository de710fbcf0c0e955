#!/usr/bin/env bash
# Every registered method on the embedded benchmark with one budget over three seeds (SEEDS,
# default 0,1,2), untrained runs of the same setting (--steps 0), then the learnability
# checks (benchmarks/ranking.py, whose exit status this script returns). Writes the README's
# measured table, mean ± std over the seeds, to OUT_DIR/table.md and the checks' report to
# OUT_DIR/ranking.txt. Extra arguments go to every run (e.g. --steps 600). Finished runs are
# skipped on a rerun.
#
#     bash benchmarks/all_methods.sh OUT_DIR [pebench run options...]
set -euo pipefail
out=${1:?usage: bash benchmarks/all_methods.sh OUT_DIR [pebench run options...]}
shift
seeds=${SEEDS:-0,1,2}
frozen=$(python -c "from pebench.bench import baseline; print(baseline('frozen-backbone'))")
pebench sweep --methods all --seeds "$seeds" --out "$out" "$@"
# The untrained model (the last --steps wins): one of the floors every task must clear.
pebench sweep --methods "$frozen" --seeds "$seeds" --out "$out" "$@" --steps 0
pebench compare --results "$out" --format md > "$out/table.md"
python "$(dirname "$0")/ranking.py" "$out" | tee "$out/ranking.txt"
