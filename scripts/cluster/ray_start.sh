#!/usr/bin/env bash
# Start a two-node Ray cluster on this machine: the head on 127.0.0.2 and a second
# node on 127.0.0.3 (loopback addresses: nothing listens beyond this machine), one
# CPU each, with token authentication (RAY_AUTH_MODE=token).
#
#   scripts/cluster/ray_start.sh STATE_DIR
#
# Writes STATE_DIR/address (the head's 127.0.0.2:PORT, what launcher="ray" takes as
# hydra.launcher.address), STATE_DIR/token (the cluster's token), STATE_DIR/env (the
# variables a driver needs: `. STATE_DIR/env`), STATE_DIR/sids-head and sids-node (the
# session of every process each node started: ray_stop.sh ends exactly those) and the
# logs. Uses `ray` from PATH (or $RAY); the nodes' workers inherit this environment
# (PYTHONPATH: where they import your code from). The head listens on RAY_PORT, RAY_PORT + 1
# (Ray Client), RAY_PORT + 2 (its dashboard process) and RAY_PORT + 3 (its agent; the second
# node's: RAY_PORT + 4), not on Ray's fixed 10001, 8265 and 52365: two clusters with
# different RAY_PORTs can run at once (with the same ports, the second one's agents cannot
# listen and its raylets abort). Settings: RAY_PORT (6390),
# RAY_CPUS_PER_NODE (1), RAY_START_TIMEOUT (s per node and try, 300: a 2-core machine busy
# with other work can take minutes), RAY_START_TRIES (5). Exits non-zero, with the
# reason and nothing left running, if a node does not start in time.
set -euo pipefail
dir=${1:?usage: ray_start.sh STATE_DIR}
port=${RAY_PORT:-6390}
cpus=${RAY_CPUS_PER_NODE:-1}
limit=${RAY_START_TIMEOUT:-300}
tries=${RAY_START_TRIES:-5}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/_sessions.sh"
ray=${RAY:-ray}
py=${PYTHON:-python3}
command -v "$ray" >/dev/null || { echo "ray_start.sh: no '$ray' command: pip install 'mushin-nb[ray]'" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -s "$dir/sids-head" ] || [ -s "$dir/sids-node" ]; then
  echo "ray_start.sh: a cluster started in $dir is still recorded; run ray_stop.sh $dir first" >&2
  exit 2
fi
rm -f "$dir/address"
# Ray's sockets live under its temp dir, whose path must stay short (AF_UNIX: 107 bytes)
tmp=$(mktemp -d /tmp/mnray.XXXXXX)
echo "$tmp" >"$dir/tempdir"
"$py" -c 'import secrets; print(secrets.token_hex(32))' >"$dir/token"
chmod 600 "$dir/token"
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$dir/token" RAY_USAGE_STATS_ENABLED=0
fail() {
  echo "ray_start.sh: $*" >&2
  for f in "$dir"/head.log "$dir"/node.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  stop_sessions "$dir/sids-node" 5 || true
  stop_sessions "$dir/sids-head" 5 || true
  rm -rf "$tmp"
  exit 1
}
common=(--num-cpus="$cpus" --object-store-memory=200000000 --disable-usage-stats --temp-dir="$tmp")
# `ray start --head` waits RAY_gcs_server_port_wait_time_s (30 s) for the GCS: on a busy
# machine, as long as a node may take
export RAY_gcs_server_port_wait_time_s="$limit"
# A raylet aborts when its node's agents (Python processes) take more than a fixed 15 s to
# write their ports ("Timed out waiting for file .../metrics_agent_port"): on a machine busy
# with other work, a node starts at a raised priority where that is allowed (root), lowered
# back to normal once it is up (its jobs then run at normal priority)
boost=()
[ "$(nice -n -5 nice 2>/dev/null)" = "-5" ] && boost=(nice -n -5)
# unboost SIDFILE: every thread of the recorded session's processes back to normal priority
unboost() {
  local sid pid t
  [ ${#boost[@]} -gt 0 ] || return 0
  for sid in $(sort -u "$1"); do
    for pid in $(session_pids "$sid"); do
      for t in /proc/"$pid"/task/*; do renice -n 0 -p "${t##*/}" >/dev/null 2>&1 || true; done
    done
  done
}
# raylet_alive SIDFILE: the raylet of the recorded session still runs (a check, never a kill)
raylet_alive() {
  local sid
  for sid in $(sort -u "$1"); do
    ps -o stat=,args= -s "$sid" | awk '$1 !~ /^Z/ && $2 ~ /\/raylet\/raylet$/ {f = 1} END {exit !f}' && return 0
  done
  return 1
}
# start_node NAME ARGS...: `ray start` in its own session, at most $limit s, tried up to
# $tries times (the raylet can still abort as above). `ray start` gives up after a fixed 30 s
# if the raylet has not registered; when the raylet still runs, the node is only late: the
# check below waits for it.
start_node() {
  local name=$1 k rc why crash
  shift
  for ((k = 1; k <= tries; k++)); do
    rc=0
    run_in_session "$limit" "$dir/sids-$name" "$dir/$name.log" "${boost[@]}" "$ray" start "$@" || rc=$?
    unboost "$dir/sids-$name"
    [ "$rc" = 0 ] && return 0
    if grep -q "timed out during startup" "$dir/$name.log" && raylet_alive "$dir/sids-$name"; then
      echo "ray_start.sh: the $name's raylet is late to register (ray start gave up after 30 s); waiting for it" >&2
      return 0
    fi
    cp "$dir/$name.log" "$dir/$name.try$k.log" || true
    stop_sessions "$dir/sids-$name" 5 || true
    why=$(grep -E '^[A-Za-z.]*(Exception|Error)' "$dir/$name.log" | tail -n 1) || true
    [ "$rc" = 124 ] && why="ray start did not finish within $limit s"
    crash=$(grep -ho 'Timed out waiting for file [^ ]*' "$tmp"/session_latest/logs/raylet*.out 2>/dev/null | tail -n 1) || true
    echo "ray_start.sh: the $name did not start (try $k of $tries): $why${crash:+ (raylet: $crash)}" >&2
  done
  return 1
}
start=$(date +%s)
start_node head --head --node-ip-address=127.0.0.2 --port="$port" --include-dashboard=false "${common[@]}" \
  --ray-client-server-port="$((port + 1))" --dashboard-port="$((port + 2))" \
  --dashboard-agent-listen-port="$((port + 3))" || fail "the head did not start"
start_node node --address="127.0.0.2:$port" --node-ip-address=127.0.0.3 "${common[@]}" \
  --dashboard-agent-listen-port="$((port + 4))" || fail "the second node did not start"
timeout "$limit" "$py" - "127.0.0.2:$port" <<'PY' || fail "the cluster at 127.0.0.2:$port does not show two nodes"
import sys, time

import ray

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
try:
    for _ in range(600):
        if sum(1 for n in ray.nodes() if n["Alive"]) >= 2:
            break
        time.sleep(0.2)
    else:
        sys.exit("fewer than two live nodes")
finally:
    ray.shutdown()
PY
echo "127.0.0.2:$port" >"$dir/address"
cat >"$dir/env" <<ENV
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH='$dir/token'
export RAY_ADDRESS='127.0.0.2:$port'
ENV
echo "Ray cluster at 127.0.0.2:$port: head 127.0.0.2 and node 127.0.0.3, started in $(($(date +%s) - start)) s (state in $dir)"
