#!/usr/bin/env bash
# Stop a Slurm cluster started by scripts/slurm-up.sh DIR: slurmrestd, slurmd's and slurmctld,
# each by the PID it wrote under DIR. munged is shared with other clusters and left running.
#   scripts/slurm-down.sh DIR
set -uo pipefail
DIR=${1:-/tmp/cpn-slurm-test}
[ -d "$DIR" ] || { echo "slurm-down: no such dir $DIR" >&2; exit 1; }
for f in "$DIR/slurmrestd.pid" "$DIR"/slurmd-*.pid "$DIR/slurmctld.pid"; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null && echo "stopped $(basename "$f" .pid) ($pid)"
  rm -f "$f"
done
rm -f "$DIR/slurmrestd.sock"
