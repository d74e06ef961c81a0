#!/usr/bin/env bash
# Stop the Ray cluster that ray_start.sh started with the same STATE_DIR: ends exactly
# the processes of the sessions it recorded (the second node first; SIGTERM, then
# SIGKILL after 5 s) and removes its temp dir. `ray stop` is not used: it ends every
# Ray process of the machine by name, other users' clusters included.
#
#   scripts/cluster/ray_stop.sh STATE_DIR [node]     (node: only the second node)
set -euo pipefail
dir=${1:?usage: ray_stop.sh STATE_DIR [node]}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/_sessions.sh"
stop_sessions "$dir/sids-node" 5
if [ "${2:-}" = node ]; then
  echo "Ray node 127.0.0.3 of $dir stopped"
  exit 0
fi
stop_sessions "$dir/sids-head" 5
if [ -f "$dir/tempdir" ]; then
  rm -rf "$(cat "$dir/tempdir")"
  rm -f "$dir/tempdir"
fi
rm -f "$dir/address"
echo "Ray cluster of $dir stopped"
