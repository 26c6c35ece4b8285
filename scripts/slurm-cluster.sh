#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm executor's tests and for trying
# `executor: { kind: slurm }` without a real cluster. Debian 12's packages (22.05), no systemd.
#
#   scripts/slurm-cluster.sh start    # install (apt) if missing, configure, start; prints the
#                                     # environment to use it: eval "$(scripts/slurm-cluster.sh env)"
#   scripts/slurm-cluster.sh env      # export SLURM_CONF=...
#   scripts/slurm-cluster.sh stop     # stop every daemon and job, leaving nothing running
#   scripts/slurm-cluster.sh status
#
# Everything lives in $OPTARCH_SLURM_DIR (default /tmp/optarch-slurm): slurm.conf, state, logs,
# and two fake GPUs (device nodes made with mknod, listed in gres.conf, so that Slurm sets
# CUDA_VISIBLE_DEVICES for jobs asking --gres=gpu:1). Needs root (it is, on CI machines).
set -euo pipefail
D=${OPTARCH_SLURM_DIR:-/tmp/optarch-slurm}
CONF=$D/slurm.conf

log() { echo "slurm-cluster: $*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  log "installing slurmctld slurmd slurm-client munge (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null; }
}

configure() {
  mkdir -p "$D/state" "$D/spool" "$D/dev"
  local cpus mem host
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
  host=$(hostname -s)
  for i in 0 1; do
    [ -e "$D/dev/nvidia$i" ] || mknod "$D/dev/nvidia$i" c 195 "$i"
  done
  cat > "$D/gres.conf" <<G
NodeName=localhost Name=gpu File=$D/dev/nvidia[0-1]
G
  cat > "$CONF" <<C
ClusterName=optarch
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MinJobAge=3600
MailProg=/bin/true
ReturnToService=2
JobCompType=jobcomp/filetxt
JobCompLoc=$D/jobcomp.txt
GresTypes=gpu
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
C
  # slurmd reads gres.conf beside slurm.conf.
  :
}

start() {
  install
  stop_daemons quiet
  configure
  export SLURM_CONF=$CONF
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; }
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
  fi
  slurmctld -f "$CONF"
  slurmd -f "$CONF" -N localhost
  local t=0
  until sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; do
    sleep 0.5; t=$((t + 1))
    if [ $t -ge 120 ]; then
      log "the node did not come up in 60 s; logs:"; tail -20 "$D/slurmctld.log" "$D/slurmd.log" >&2
      exit 1
    fi
    # A node left down by an earlier run comes back here.
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
  done
  log "up: $(sinfo -h -o '%P %D %c %T %G')   (use: export SLURM_CONF=$CONF)"
}

stop_daemons() {
  export SLURM_CONF=$CONF
  if [ -f "$CONF" ] && pgrep -x slurmctld >/dev/null; then
    scancel --full --quiet -u root >/dev/null 2>&1 || true
  fi
  for d in slurmd slurmctld; do
    pkill -x "$d" 2>/dev/null || true
  done
  # slurmstepd and the jobs' processes outlive a killed slurmd: kill them by PID.
  pkill -f slurmstepd 2>/dev/null || true
  sleep 0.5
  pkill -9 -x slurmd 2>/dev/null || true
  pkill -9 -x slurmctld 2>/dev/null || true
  pkill -9 -f slurmstepd 2>/dev/null || true
  rm -rf "$D/state" "$D/spool"
  [ "${1:-}" = quiet ] || log "stopped"
}

stop() {
  stop_daemons
  pkill -x munged 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  status) SLURM_CONF=$CONF sinfo; SLURM_CONF=$CONF squeue ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
