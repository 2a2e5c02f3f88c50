#!/usr/bin/env bash
# Two fire_rate benches at once, one per checkout, sharing this machine.
#
# The CPU a fire costs moves from one run to the next with the machine's own
# state (3 nodes at 10,000 fires/s measured 36 to 44 % of a core for the same
# code, every node of a run high or low together). Two clusters run side by
# side meet the same machine, so the ratio of their figures is the change's
# (two runs of the same code: within 1-3 %). Each cluster gets JOBS jobs
# (default 5,000, so the machine carries 10,000 fires a second in all).
#
#   git worktree add /tmp/before <commit>
#   bash bench/fire_rate_pair.sh after_1 "$PWD" before_1 /tmp/before [JOBS] [SECONDS]
#
# Each result is written to that checkout's bench/results/ and copied here.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 NAME_A DIR_A NAME_B DIR_B [JOBS] [SECONDS]" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
jobs="${5:-5000}"
seconds="${6:-130}"

one() { # name dir
  (cd "$2" && PYTHONPATH="$2" "$python" bench/fire_rate.py --nodes 3 --jobs "$jobs" \
    --duration "$seconds" --name "$1")
  if [ "$2/bench/results" != "$here/bench/results" ]; then
    cp "$2/bench/results/$1.json" "$here/bench/results/"
  fi
}

one "$1" "$2" > "/tmp/fire_rate_pair_$1.log" 2>&1 &
a=$!
one "$3" "$4" > "/tmp/fire_rate_pair_$3.log" 2>&1 &
b=$!
wait "$a" "$b"
for name in "$1" "$3"; do
  "$python" -c '
import json, sys
step = json.load(open(sys.argv[1]))["steps"][0]
cpu, p99 = step["node_cpu_percent"], step["lateness_p99_seconds"]
missed, duplicated = step["missed"], step["duplicates"]
print(f"{sys.argv[2]}: {cpu:.2f} % of a core, p99 lateness {p99:.3f} s,"
      f" missed {missed}, duplicated {duplicated}")
' "$here/bench/results/$name.json" "$name"
done
