#!/usr/bin/env bash
# A private one-node Slurm cluster (munged + slurmctld + slurmd) on localhost, for CI and the
# `pytest -m slurm` tests. Debian 12, root, no systemd needed. Install the packages first:
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
#       slurmctld slurmd slurm-client munge
#
# usage: tests/slurm/cluster.sh start|stop|status
#   start   write /etc/slurm/slurm.conf from `hostname -s` and `slurmd -C`, start
#           munged -> slurmctld -> slurmd, wait until the node is idle and a real `srun` step runs.
#           Refuses to start when one of the daemons already runs (exit 1).
#   stop    cancel every job left in the queue, stop slurmd -> slurmctld -> munged by the PIDs in
#           their pid files (TERM, then KILL after 10 s); afterwards no daemon of ours is left.
#   status  print the daemons' PIDs, `scontrol ping`, `sinfo`, `squeue`; exit 0 when the cluster answers.
# Environment:
#   SLURM_CI_FRESH=1     start from an empty state (job ids from 1; forget jobs of an earlier run)
#   SLURM_CI_CPUS=N      advertise N CPUs instead of the real ones (oversubscription; no gain for CPU work)
#   SLURM_CI_CGROUPS=1   cgroup v1 plugins: memory is enforced (job state OUT_OF_MEMORY); jobs need mem_mb >= 500
# The partition is called `ci` (default partition); profiles/slurm/config.yaml uses it.
# Recipe and pitfalls: /work/shared/slurm-local.md (MinJobAge >= 3 x init-seconds-before-status-checks,
# status via squeue because there is no slurmdbd, ...).
set -euo pipefail

PIDFILES=(/run/munge/munged.pid /run/slurmctld.pid /run/slurmd.pid)
PARTITION=ci

die() { echo "cluster.sh: $*" >&2; exit 1; }

running() {  # $1 = pidfile; true when its PID is alive
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

write_conf() {
  local host hwline mem nodehw extra="" proctrack task acctg
  host=$(hostname -s)
  # e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  hwline=$(slurmd -C | head -1)
  mem=$(echo "$hwline" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$(( mem - 512 ))   # RealMemory above the real value drains the node ("Low RealMemory")
  if [ -n "${SLURM_CI_CPUS:-}" ]; then
    nodehw="CPUs=${SLURM_CI_CPUS}"
    extra="SlurmdParameters=config_overrides"
  else
    nodehw=$(echo "$hwline" | sed 's/^NodeName=[^ ]* //; s/ RealMemory=[0-9]*//; s/ *$//')
  fi
  if [ "${SLURM_CI_CGROUPS:-0}" = 1 ]; then
    proctrack=proctrack/cgroup; task=task/cgroup,task/affinity; acctg=jobacct_gather/cgroup
    cat > /etc/slurm/cgroup.conf <<'CG'
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
CG
  else
    proctrack=proctrack/linuxproc; task=task/affinity; acctg=jobacct_gather/none
    rm -f /etc/slurm/cgroup.conf
  fi
  cat > /etc/slurm/slurm.conf <<CONF
# written by tests/slurm/cluster.sh start -- a private single-node CI cluster on 127.0.0.1
ClusterName=localci
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=${proctrack}
TaskPlugin=${task}
JobAcctGatherType=${acctg}
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# finished jobs stay visible to squeue for 10 min: the Slurm executor plugin's squeue status mode
# needs MinJobAge >= 3 x slurm-init-seconds-before-status-checks, else it silently falls back to sacct
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
${extra}
NodeName=${host} NodeAddr=127.0.0.1 ${nodehw} RealMemory=${mem} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  local pf t0 host state i
  for pf in "${PIDFILES[@]}"; do
    if running "$pf"; then
      die "already running: $pf (pid $(cat "$pf")); run '$0 stop' first"
    fi
  done
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    || die "slurmctld/slurmd/munged not installed: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
  [ "$(id -u)" = 0 ] || die "must run as root (daemons, /etc/slurm)"
  t0=$(date +%s.%N)
  host=$(hostname -s)
  mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm \
           /run/munge /var/log/munge /var/lib/munge
  if [ "${SLURM_CI_FRESH:-0}" = 1 ]; then
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
  fi
  chown slurm:slurm /var/lib/slurm/slurmctld /var/log/slurm
  chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then   # the munge postinst normally creates it
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  fi
  write_conf

  # munged -> slurmctld -> slurmd; each daemonizes and writes its pid file
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || die "munge round trip failed (see /var/log/munge/munged.log)"
  slurmctld -i          # -i: ignore unreadable state files of an earlier run
  slurmd

  # readiness: the controller answers, the node is idle, and a real job step runs
  for i in $(seq 1 120); do
    if scontrol ping 2>/dev/null | grep -q 'is UP' && [ "$(sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ]; then
      timeout 60 srun -p "$PARTITION" -N1 -n1 -t 1 true \
        || { echo "cluster.sh: srun readiness step failed" >&2; break; }
      state=$(sinfo -h -o '%P %a %D %t %N cpus=%c mem=%m')
      echo "slurm ready after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s: $state"
      return 0
    fi
    sleep 0.5
  done
  echo "cluster.sh: slurm NOT ready after 60 s" >&2
  sinfo -R >&2 || true
  tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
  stop >&2
  exit 1
}

stop_pid() {  # $1 = name, $2 = pidfile
  local pf=$2 pid
  [ -s "$pf" ] || { echo "$1: not running (no pid file $pf)"; return 0; }
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$1 ($pid) did not exit on TERM within 10 s, sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "$1 ($pid) stopped"
  else
    echo "$1: pid $pid not running"
  fi
  rm -f "$pf"
}

stop() {
  local left
  if running /run/slurmctld.pid; then
    # leftovers of an aborted run (a killed snakemake does not cancel its jobs): the cluster is private
    left=$(squeue -h -o %i 2>/dev/null | wc -l || true)
    if [ "${left:-0}" -gt 0 ]; then
      echo "cancelling $left job(s) left in the queue"
      scancel --full -u "$(id -un)" 2>/dev/null || true
      for _ in $(seq 1 30); do
        [ "$(squeue -h -t PD,R,CG -o %i 2>/dev/null | wc -l)" = 0 ] && break; sleep 0.5
      done
    fi
  fi
  # compute daemon, controller, then munge (both slurm daemons use munge while shutting down)
  stop_pid slurmd    /run/slurmd.pid
  stop_pid slurmctld /run/slurmctld.pid
  stop_pid munged    /run/munge/munged.pid
}

status() {
  local pf rc=0
  for pf in "${PIDFILES[@]}"; do
    if running "$pf"; then echo "$(basename "$pf" .pid): running, pid $(cat "$pf")"
    else echo "$(basename "$pf" .pid): not running"; rc=1; fi
  done
  if scontrol ping 2>/dev/null | grep -q 'is UP'; then
    scontrol ping; sinfo; squeue
  else
    echo "scontrol ping: controller does not answer"; rc=1
  fi
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
