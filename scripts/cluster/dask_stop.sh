#!/usr/bin/env bash
# Stop the Dask cluster that dask_start.sh started with the same STATE_DIR: ends
# exactly the processes of the sessions it recorded (SIGTERM, then SIGKILL after 10 s).
#
#   scripts/cluster/dask_stop.sh STATE_DIR
set -euo pipefail
dir=${1:?usage: dask_stop.sh STATE_DIR}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/_sessions.sh"
stop_sessions "$dir/sids" 10
rm -f "$dir/address"
echo "Dask cluster of $dir stopped"
