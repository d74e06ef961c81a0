# Shared by the Dask and Ray cluster scripts (sourced, not run).
# Every process is started as the leader of its own session (setsid), and that
# session's id is recorded: stopping a cluster ends exactly the processes of those
# sessions (the leader and everything it started), by id, never by name.

# start_in_session SIDFILE LOG CMD...: run CMD in the background in a new session;
# append the session id (the leader's pid) to SIDFILE.
start_in_session() {
  local sidfile=$1 log=$2
  shift 2
  setsid bash -c 'echo $$ >> "$0"; exec "$@"' "$sidfile" "$@" >"$log" 2>&1 </dev/null &
}

# run_in_session SECONDS SIDFILE LOG CMD...: run CMD in a new session, wait for it
# (at most SECONDS), record the session id; what it leaves running stays in that session.
run_in_session() {
  local secs=$1 sidfile=$2 log=$3
  shift 3
  timeout "$secs" setsid --wait bash -c 'echo $$ >> "$0"; exec "$@"' "$sidfile" "$@" >"$log" 2>&1 </dev/null
}

# session_pids SID: the live (not zombie) processes of session SID
session_pids() {
  ps -o pid=,stat= -s "$1" 2>/dev/null | awk '$2 !~ /^Z/ {print $1}'
}

# stop_sessions SIDFILE [GRACE_SECONDS]: SIGTERM every process of the recorded
# sessions, SIGKILL what is left after GRACE_SECONDS; fails if anything survives.
stop_sessions() {
  local sidfile=$1 grace=${2:-10} sids pids sid i
  [ -f "$sidfile" ] || return 0
  sids=$(sort -u "$sidfile")
  for sid in $sids; do
    pids=$(session_pids "$sid")
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null || true
  done
  for ((i = 0; i < grace * 10; i++)); do
    pids=$(for sid in $sids; do session_pids "$sid"; done)
    [ -z "$pids" ] && break
    sleep 0.1
  done
  for sid in $sids; do
    pids=$(session_pids "$sid")
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  done
  sleep 0.5
  pids=$(for sid in $sids; do session_pids "$sid"; done)
  if [ -n "$pids" ]; then
    echo "still running after SIGKILL: $pids" >&2
    return 1
  fi
  rm -f "$sidfile"
}
