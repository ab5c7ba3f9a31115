#!/usr/bin/env bash
# The resume race's stress check (issue 18): the SIGTERM test N times in a row (default 20) while a training
# job keeps the other core busy. Prints "passed K of N"; exits 1 unless every run passed.
#   bash tests/stress_sigterm.sh [N]
set -u
cd "$(dirname "$0")/.."
n=${1:-20}
busy=$(mktemp -d)
python train.py --out "$busy/run" --max_iters 100000 --progress false > "$busy/log" 2>&1 &
job=$!
trap 'kill $job 2>/dev/null; rm -rf "$busy"' EXIT
passed=0
for i in $(seq "$n"); do
  if python -m pytest -q -p no:cacheprovider tests/test_run_folders.py -k test_sigterm_saves > "$busy/t$i" 2>&1; then
    passed=$((passed + 1))
  else
    echo "run $i failed:"; tail -20 "$busy/t$i"
  fi
done
echo "passed $passed of $n (load average $(cut -d' ' -f1-3 /proc/loadavg))"
[ "$passed" -eq "$n" ]
