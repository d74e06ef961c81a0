#!/usr/bin/env bash
# Start a Dask distributed cluster on this machine: a scheduler and N workers (one
# worker process with one thread each, under a nanny) on 127.0.0.1.
#
#   scripts/cluster/dask_start.sh STATE_DIR [N_WORKERS=2]
#
# Writes STATE_DIR/address (the scheduler's tcp://127.0.0.1:PORT, what
# launcher="dask" takes as hydra.launcher.address), STATE_DIR/scheduler.json,
# STATE_DIR/sids (the session of every process started: dask_stop.sh ends exactly
# those) and the logs (scheduler.log, worker-K.log). Uses `dask` from PATH (or $DASK);
# workers inherit this environment (PYTHONPATH: where they import your code from).
# Exits non-zero, with the reason and nothing left running, if the cluster does not
# come up within $DASK_START_TIMEOUT seconds (default 120).
set -euo pipefail
dir=${1:?usage: dask_start.sh STATE_DIR [N_WORKERS]}
n=${2:-2}
limit=${DASK_START_TIMEOUT:-120}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/_sessions.sh"
dask=${DASK:-dask}
py=${PYTHON:-python3}
command -v "$dask" >/dev/null || { echo "dask_start.sh: no '$dask' command: pip install 'mushin-nb[dask]'" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -s "$dir/sids" ]; then
  echo "dask_start.sh: $dir/sids exists: a cluster started there is still recorded; run dask_stop.sh $dir first" >&2
  exit 2
fi
rm -f "$dir/address" "$dir/scheduler.json"
fail() {
  echo "dask_start.sh: $*" >&2
  for f in "$dir"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  stop_sessions "$dir/sids" 5 || true
  exit 1
}
start=$(date +%s)
start_in_session "$dir/sids" "$dir/scheduler.log" "$dask" scheduler --host 127.0.0.1 --port 0 \
  --no-dashboard --dashboard-address 127.0.0.1:0 --scheduler-file "$dir/scheduler.json" --idle-timeout 7200
for ((i = 0; i < limit * 10; i++)); do
  [ -s "$dir/scheduler.json" ] && break
  sleep 0.1
done
[ -s "$dir/scheduler.json" ] || fail "the scheduler wrote no $dir/scheduler.json within $limit s"
address=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$dir/scheduler.json")
for ((k = 1; k <= n; k++)); do
  mkdir -p "$dir/worker-$k"
  start_in_session "$dir/sids" "$dir/worker-$k.log" "$dask" worker "$address" --name "worker-$k" \
    --host 127.0.0.1 --nworkers 1 --nthreads 1 --no-dashboard --death-timeout 60 \
    --local-directory "$dir/worker-$k"
done
left=$((limit - ($(date +%s) - start)))
((left > 5)) || left=5
timeout "$left" "$py" - "$address" "$n" "$left" <<'PY' || fail "the $n workers did not join $address within $limit s"
import sys
from distributed import Client

address, n, left = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with Client(address, timeout=left) as c:
    c.wait_for_workers(n, timeout=left)
PY
echo "$address" >"$dir/address"
echo "Dask cluster at $address: scheduler and $n workers, started in $(($(date +%s) - start)) s (state in $dir)"
