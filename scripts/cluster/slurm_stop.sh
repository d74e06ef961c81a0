#!/usr/bin/env bash
# slurm_stop.sh STATE_DIR [--remove] -- stop the cluster that slurm_start.sh STATE_DIR
# started: cancel its jobs, stop its daemons by the pids in STATE_DIR/pids (SIGTERM, then
# SIGKILL after 15 s), then stop any process the cluster itself started that is still
# there (a slurmstepd or a job process, found by the marker slurm_start.sh puts in the
# daemons' environment and by parentage) -- by pid, never by name. Leaves nothing
# running. --remove also deletes STATE_DIR (its logs are gone then).
set -uo pipefail
STATE=${1:-}
[[ -n $STATE && -d $STATE ]] || { echo "usage: $0 STATE_DIR [--remove]" >&2; exit 2; }
STATE=$(cd "$STATE" && pwd -P)
REMOVE=0; [[ ${2:-} == --remove ]] && REMOVE=1
log() { echo "[slurm_stop] $*" >&2; }
alive() { # running (a zombie waiting for its parent to reap it is not)
  kill -0 "$1" 2>/dev/null || return 1
  local st
  st=$(sed 's/.*) \([A-Za-z]\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ $st != Z ]]
}
export SLURM_CONF=$STATE/etc/slurm.conf

# the processes of this cluster: the daemons' pids, every process started with the
# marker, every process that holds one of its log files open (slurmstepd), and all their
# descendants (collected now, while the process tree is intact)
is_daemon() { # <name> <pid>: that pid is alive and is still that daemon (not a reused pid)
  local comm
  comm=$(cat "/proc/$2/comm" 2>/dev/null) || return 1
  [[ $comm == "$1"* ]]
}
ours() {
  local seeds=() p name
  while read -r name p; do is_daemon "$name" "$p" && seeds+=("$p"); done < <(cat "$STATE/pids" 2>/dev/null)
  for f in /proc/[0-9]*/environ; do
    p=${f#/proc/}; p=${p%/environ}
    grep -qszxF "MUSHIN_SLURM_STATE=$STATE" "$f" && seeds+=("$p")
  done
  # slurmstepd starts with an empty environment, but keeps the cluster's slurmd.log open
  local d l
  for d in /proc/[0-9]*/fd; do
    p=${d#/proc/}; p=${p%/fd}
    for l in "$d"/*; do
      [[ $(readlink "$l" 2>/dev/null) == "$STATE/log/"* ]] && { seeds+=("$p"); break; }
    done
  done
  ps -eo pid=,ppid= | awk -v seeds="${seeds[*]}" '
    BEGIN { n = split(seeds, s, " "); for (i = 1; i <= n; i++) keep[s[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do { changed = 0
        for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 }
      } while (changed)
      for (p in keep) if (p in parent) printf "%s ", p
    }'
}

ctld=$(awk '$1=="slurmctld"{print $2}' "$STATE/pids" 2>/dev/null)
if [[ -n $ctld ]] && is_daemon slurmctld "$ctld" && timeout 5 scontrol ping 2>/dev/null | grep -q "is UP"; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u)
  if [[ -n $jobs ]]; then
    log "cancelling jobs: $(echo $jobs)"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 75); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.2; done
  fi
fi
before=$(ours)

stop_pid() { # <name> <pid>
  local name=$1 p=$2
  is_daemon "$name" "$p" || return 0
  log "stopping $name (pid $p)"
  kill "$p" 2>/dev/null
  for _ in $(seq 1 150); do alive "$p" || return 0; sleep 0.1; done
  log "$name (pid $p) did not exit after SIGTERM: SIGKILL"
  kill -9 "$p" 2>/dev/null
}
for name in slurmd slurmctld slurmdbd mariadbd munged; do
  for p in $(awk -v n="$name" '$1==n{print $2}' "$STATE/pids" 2>/dev/null); do stop_pid "$name" "$p"; done
done

left=()
for p in $before; do alive "$p" && left+=("$p"); done
if ((${#left[@]})); then
  log "stopping what the cluster left running: ${left[*]} ($(ps -o comm= -p "$(
    IFS=,
    echo "${left[*]}"
  )" 2>/dev/null | tr '\n' ' '))"
  kill -9 "${left[@]}" 2>/dev/null
  for _ in $(seq 1 20); do
    n=0
    for p in "${left[@]}"; do alive "$p" && n=1; done
    ((n)) || break
    sleep 0.1
  done
fi
still=()
for p in $before; do alive "$p" && still+=("$p"); done
rm -f "$STATE/pids"
if ((REMOVE)); then rm -rf "$STATE"; fi
if ((${#still[@]})); then
  log "ERROR: still running: ${still[*]}"
  exit 1
fi
log "stopped; nothing of $STATE is running"
