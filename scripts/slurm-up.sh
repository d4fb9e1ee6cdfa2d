#!/usr/bin/env bash
# Bring up a real single-machine Slurm cluster for cpn's tests and local runs.
#
#   scripts/slurm-up.sh DIR N
#
# Starts munge (if not running), slurmctld, N slurmd "fake nodes" (node1..nodeN, ports 17001..)
# and slurmrestd (as user `slurmrest`, local auth, on unix:DIR/slurmrestd.sock, API v0.0.38).
# The last node carries 2 fake GPUs (char devices made by mknod under DIR/fakedev). All nodes are
# in partition `debug`. DIR/work is world-writable (1777) for job scripts and output.
# Idempotent: if `scontrol ping` with DIR/slurm.conf already answers UP, it only prints hints.
# Must run as root. Installing packages is not its job:
#   apt-get install -y --no-install-recommends slurm-wlm slurmrestd munge
# Stop with scripts/slurm-down.sh DIR. Based on shared/slurm/SLURM.md (Slurm 22.05).
set -euo pipefail
DIR=${1:-/tmp/cpn-slurm-test}; N=${2:-2}
for tool in slurmctld slurmd slurmrestd sinfo scontrol munged munge; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    echo "slurm-up: '$tool' is not installed; install the packages first:" >&2
    echo "  apt-get install -y --no-install-recommends slurm-wlm slurmrestd munge" >&2
    exit 1
  fi
done
if [ "$(id -u)" -ne 0 ]; then echo "slurm-up: must run as root" >&2; exit 1; fi
case "$N" in ''|*[!0-9]*) echo "slurm-up: N must be a number, got '$N'" >&2; exit 2;; esac
[ "$N" -ge 1 ] || { echo "slurm-up: N must be >= 1" >&2; exit 2; }
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
export SLURM_CONF="$DIR/slurm.conf"
# The daemons inherit this directory as theirs: make it one that outlives the caller's
# checkout (slurmrestd 22.05 dies on a job submit once its working directory is gone).
cd "$DIR"

hints() {
  echo "export SLURM_CONF=$SLURM_CONF"
  echo "# slurmrestd (v0.0.38, local auth): unix:$DIR/slurmrestd.sock"
  echo "# job work dir (world-writable): $DIR/work"
  echo "# stop: scripts/slurm-down.sh $DIR"
}


rest_up() { [ -S "$DIR/slurmrestd.sock" ] && [ -f "$DIR/slurmrestd.pid" ] && kill -0 "$(cat "$DIR/slurmrestd.pid")" 2>/dev/null; }

start_rest() {
  id slurmrest >/dev/null 2>&1 || useradd -r -m slurmrest
  rm -f "$DIR/slurmrestd.sock"
  # slurmrestd refuses root; it runs as slurmrest and must be able to create its socket in DIR.
  chgrp slurmrest "$DIR"; chmod 775 "$DIR"
  # setpriv execs (no forking wrapper), so $! is slurmrestd's own PID.
  setpriv --reuid=slurmrest --regid=slurmrest --init-groups env SLURM_CONF="$SLURM_CONF" \
    slurmrestd -s openapi/v0.0.38 -a rest_auth/local "unix:$DIR/slurmrestd.sock" \
    >"$DIR/log/slurmrestd.log" 2>&1 </dev/null &
  echo $! > "$DIR/slurmrestd.pid"
  for _ in $(seq 1 50); do [ -S "$DIR/slurmrestd.sock" ] && break; sleep 0.1; done
  [ -S "$DIR/slurmrestd.sock" ] || { echo "slurm-up: slurmrestd did not start; see $DIR/log/slurmrestd.log" >&2; cat "$DIR/log/slurmrestd.log" >&2; exit 1; }
  # Root (the test runner) and slurmrest may talk to it.
  chmod 777 "$DIR/slurmrestd.sock" || true
}

if [ -f "$SLURM_CONF" ] && timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then
  echo "slurm-up: cluster at $DIR is already UP"
  rest_up || start_rest
  hints
  exit 0
fi

mkdir -p "$DIR"/{state,log,jobs,fakedev}
mkdir -p "$DIR/work"; chmod 1777 "$DIR/work"
for i in $(seq 1 "$N"); do mkdir -p "$DIR/spool/node$i"; done
for i in 0 1; do [ -e "$DIR/fakedev/nvidia$i" ] || mknod "$DIR/fakedev/nvidia$i" c 195 "$i"; done

if [ "$N" -gt 1 ]; then
  CPU_NODES="NodeName=node[1-$((N-1))] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[17001-$((17000+N-1))] CPUs=2 RealMemory=2000 State=UNKNOWN"
else
  CPU_NODES=""
fi
cat > "$DIR/slurm.conf" <<CONF
ClusterName=cpn
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=5
GresTypes=gpu
$CPU_NODES
NodeName=node$N NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((17000+N)) CPUs=2 RealMemory=2000 Gres=gpu:fake:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$DIR/gres.conf" <<CONF
NodeName=node$N Name=gpu Type=fake File=$DIR/fakedev/nvidia[0-1]
CONF

install -d -o munge -g munge -m 755 /run/munge          # /run is empty on a fresh start
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
# A stale daemon from an earlier run of this DIR would hold the ports.
for f in "$DIR"/slurmd-*.pid "$DIR/slurmctld.pid" "$DIR/slurmrestd.pid"; do
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
done
sleep 0.2
slurmctld                                               # daemonizes; PID goes to DIR/slurmctld.pid
for i in $(seq 1 "$N"); do slurmd -N "node$i"; done     # one slurmd per fake node
ok=0
for _ in $(seq 1 100); do
  if [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" -ge "$N" ]; then ok=1; break; fi
  sleep 0.2
done
sinfo -N -o '%N %P %t %c %m %G' || true
if [ "$ok" -ne 1 ]; then
  echo "slurm-up: not all $N nodes became idle; see $DIR/log/" >&2
  exit 1
fi
start_rest
hints
