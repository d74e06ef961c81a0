#!/usr/bin/env bash
# slurm_start.sh STATE_DIR -- a real single-node SLURM cluster on this machine, for the
# cluster tests, the benchmark and the scale-out notebook. No systemd.
#
# Starts, on 127.0.0.1 with free ports: munged, MariaDB, slurmdbd (accounting, so that
# `sacct` works: submitit polls it to see a cancelled or killed job end), slurmctld and
# slurmd. Everything it writes (configs, munge key and socket, database, spool, logs,
# pid files) lives under STATE_DIR; nothing under /etc, /run or /var is touched, so
# several clusters can run side by side and `slurm_stop.sh STATE_DIR` removes all trace.
#
# Installs Debian's packages if missing (apt-get; needs root, as do the daemons).
#
# Prints on stdout, for a caller to read (the log goes to stderr):
#   SLURM_CONF=<STATE_DIR>/etc/slurm.conf     -> export it before sbatch/squeue/sacct
#   PIDS=<munged> <mariadbd> <slurmdbd> <slurmctld> <slurmd>
# and writes the same to STATE_DIR/env (a file to `source`) and STATE_DIR/pids.
#
# Env knobs: SLURM_PARTITION (debug), SLURM_CLUSTER (mushin), SLURM_CPUS (nproc: how many
# one-CPU jobs run at once), SLURM_NO_INSTALL=1 (fail instead of apt-get).
# Exit codes: 0 ready; 2 usage; 3 not root; 4 packages missing and not installable;
# 1 a daemon did not start (the message names its log).
#
# Pitfalls this script avoids (see also slurm_stop.sh):
#  - KillWait=2: a cancelled job gets SIGTERM, then SIGKILL 2 s later (the default 30 s
#    keeps cancelled jobs COMPLETING and blocks the node).
#  - SchedulerParameters: schedule at once (no batch delay, backfill every second),
#    otherwise array tasks start seconds apart.
#  - a fresh StateSaveLocation restarts job ids at 1: never reuse a submitit folder
#    across clusters (mushin-nb's launcher removes stale result files of reused ids).
set -euo pipefail

STATE=${1:-}
[[ -n $STATE ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
PART=${SLURM_PARTITION:-debug}
CLUSTER=${SLURM_CLUSTER:-mushin}
CPUS=${SLURM_CPUS:-$(getconf _NPROCESSORS_ONLN)}  # not nproc: it honours OMP_NUM_THREADS, which Ray sets to 1
H=$(hostname -s)
export DEBIAN_FRONTEND=noninteractive

log() { echo "[slurm_start] $*" >&2; }
die() { local code=$1; shift; echo "[slurm_start] ERROR: $*" >&2; exit "$code"; }
wait_for() { # wait_for <seconds> <cmd...>
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || return 1; sleep 0.2; done
}
pid_of() { [[ -s $1 ]] && cat "$1"; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

READY=0 OURS=0
on_exit() { # a start that failed half-way stops what it started (by pid), leaving nothing running
  if ((OURS && !READY)) && [[ -s $STATE/pids ]]; then
    log "start failed: stopping what was started"
    "$(dirname "$0")/slurm_stop.sh" "$STATE" >&2 || true
  fi
}
trap on_exit EXIT

[[ $(id -u) == 0 ]] || die 3 "must run as root (munged, slurmd and slurmctld here run as root)"

# ---------------------------------------------------------------- 1. packages
pkgs=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ ${SLURM_NO_INSTALL:-0} == 1 ]] && die 4 "missing packages: ${missing[*]} (apt-get install ${missing[*]})"
  log "installing: ${missing[*]}"
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die 4 "could not install ${missing[*]} with apt-get"
fi

# ---------------------------------------------------------------- 2. layout
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd -P)
if [[ -s $STATE/pids ]]; then
  for p in $(awk '{print $2}' "$STATE/pids"); do
    kill -0 "$p" 2>/dev/null && die 1 "$STATE already holds a running cluster (pid $p); stop it with slurm_stop.sh $STATE"
  done
fi
# munged refuses a socket in a directory that others cannot traverse
chmod 0755 "$STATE"
d=$STATE
while [[ $d != / ]]; do
  perms=$(stat -c %A "$d")
  [[ ${perms:9:1} == [xt] ]] || die 1 "munge needs every directory above its socket to be searchable by all: chmod o+x $d (or choose another STATE_DIR)"
  d=$(dirname "$d")
done
E=$STATE/etc R=$STATE/run L=$STATE/log
mkdir -p "$E" "$R" "$L" "$STATE/munge" "$STATE/spool/ctld" "$STATE/spool/d"
chmod 0755 "$E" "$R" "$L" "$STATE/munge"
: >"$STATE/pids"
OURS=1
# marks the daemons (and the slurmstepd they start) so slurm_stop.sh can find leftovers
export MUSHIN_SLURM_STATE=$STATE
getent hosts "$H" >/dev/null || die 1 "this host's name $H does not resolve; add '127.0.0.1 $H' to /etc/hosts"

CTLD_PORT=$(free_port) SLURMD_PORT=$(free_port) DBD_PORT=$(free_port) DB_PORT=$(free_port)
MEM_TOTAL=$(free -m | awk '/^Mem:/{print $2}')
MEM=$((MEM_TOTAL > 4096 ? MEM_TOTAL - 2048 : MEM_TOTAL / 2))
SOCK=$STATE/munge/munge.socket.2
export SLURM_CONF=$E/slurm.conf

# ---------------------------------------------------------------- 3. munge
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1 count=1024 status=none
chmod 0400 "$STATE/munge/munge.key"
log "starting munged"
/usr/sbin/munged --force --socket="$SOCK" --key-file="$STATE/munge/munge.key" \
  --pid-file="$R/munged.pid" --log-file="$L/munged.log" --seed-file="$STATE/munge/munged.seed" \
  || die 1 "munged did not start (see $L/munged.log)"
echo "munged $(pid_of "$R/munged.pid")" >>"$STATE/pids"
wait_for 10 bash -c "munge -S '$SOCK' -n | unmunge -S '$SOCK'" || die 1 "munge does not work (see $L/munged.log)"

# ---------------------------------------------------------------- 4. MariaDB (accounting store)
log "starting mariadbd on 127.0.0.1:$DB_PORT"
mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql" \
  --auth-root-authentication-method=socket --skip-test-db >"$L/mariadb-install.log" 2>&1 \
  || die 1 "mariadb-install-db failed (see $L/mariadb-install.log)"
nohup /usr/sbin/mariadbd --no-defaults --user=root --datadir="$STATE/mysql" \
  --socket="$R/mysqld.sock" --pid-file="$R/mariadbd.pid" --port="$DB_PORT" \
  --bind-address=127.0.0.1 --skip-name-resolve --innodb-buffer-pool-size=32M \
  --log-error="$L/mariadb.log" </dev/null >/dev/null 2>&1 &
echo "mariadbd $!" >>"$STATE/pids"
wait_for 60 mariadb-admin --no-defaults --socket="$R/mysqld.sock" ping \
  || die 1 "mariadbd did not start (see $L/mariadb.log)"
DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
mariadb --no-defaults --socket="$R/mysqld.sock" -e "CREATE DATABASE slurm_acct_db;
  CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"

# ---------------------------------------------------------------- 5. configs
cat >"$E/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$L/slurmdbd.log
PidFile=$R/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 0600 "$E/slurmdbd.conf"
cat >"$E/slurm.conf" <<EOF
# written by mushin-nb's scripts/cluster/slurm_start.sh
ClusterName=$CLUSTER
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$SOCK
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_min_interval=100000
KillWait=2
ReturnToService=2
MailProg=/bin/true
SlurmdParameters=config_overrides
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$R/slurmctld.pid
SlurmdPidFile=$R/slurmd.pid
SlurmctldLogFile=$L/slurmctld.log
SlurmdLogFile=$L/slurmd.log
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
MaxArraySize=10001
NodeName=$H NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PART Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF

# ---------------------------------------------------------------- 6. slurmdbd
log "starting slurmdbd on 127.0.0.1:$DBD_PORT"
slurmdbd || die 1 "slurmdbd did not start (see $L/slurmdbd.log)"
wait_for 30 test -s "$R/slurmdbd.pid" || die 1 "slurmdbd wrote no pid file (see $L/slurmdbd.log)"
echo "slurmdbd $(pid_of "$R/slurmdbd.pid")" >>"$STATE/pids"
wait_for 30 sacctmgr -n list cluster || die 1 "slurmdbd is not answering (see $L/slurmdbd.log)"
sacctmgr -i add cluster "$CLUSTER" >/dev/null

# ---------------------------------------------------------------- 7. slurmctld + slurmd
log "starting slurmctld on 127.0.0.1:$CTLD_PORT"
slurmctld -i || die 1 "slurmctld did not start (see $L/slurmctld.log)"
wait_for 30 test -s "$R/slurmctld.pid" || die 1 "slurmctld wrote no pid file (see $L/slurmctld.log)"
echo "slurmctld $(pid_of "$R/slurmctld.pid")" >>"$STATE/pids"
wait_for 30 bash -c 'scontrol ping | grep -q "is UP"' || die 1 "slurmctld is not up (see $L/slurmctld.log)"
log "starting slurmd (node $H, $CPUS CPUs)"
slurmd -N "$H" || die 1 "slurmd did not start (see $L/slurmd.log)"
wait_for 30 test -s "$R/slurmd.pid" || die 1 "slurmd wrote no pid file (see $L/slurmd.log)"
echo "slurmd $(pid_of "$R/slurmd.pid")" >>"$STATE/pids"

node_state() { sinfo -h -N -n "$H" -o %T 2>/dev/null | head -1; }
st=""
for _ in $(seq 1 150); do
  st=$(node_state)
  case $st in
    idle | mixed | allocated) break ;;
    *down* | *drain* | *drng* | *fail*) scontrol update nodename="$H" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
[[ $st =~ ^(idle|mixed|allocated)$ ]] || die 1 "node $H is '$st' (see $L/slurmd.log and $L/slurmctld.log)"

# ---------------------------------------------------------------- 8. smoke test, then report
out=$(timeout 60 srun -p "$PART" -N1 -n1 -t 1 hostname 2>&1) || die 1 "srun smoke test failed: $out"
READY=1
PIDS=$(awk '{printf "%s%s", sep, $2; sep=" "}' "$STATE/pids")
{
  echo "export SLURM_CONF=$SLURM_CONF"
  echo "# pids: $(tr '\n' ' ' <"$STATE/pids")"
} >"$STATE/env"
log "cluster '$CLUSTER' ready: partition $PART, node $H ($st, $CPUS CPUs), srun -> $out; accounting via sacct"
log "use it with: source $STATE/env   (stop it with: scripts/cluster/slurm_stop.sh $STATE)"
echo "SLURM_CONF=$SLURM_CONF"
echo "PIDS=$PIDS"
