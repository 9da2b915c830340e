#!/usr/bin/env bash
# The project's own durable Redis (the installed Debian `redis-server`, no download): an append-only file
# fsynced every second (or on every write), so a Redis crash loses at most the last second of admissions
# (nothing with `always`). `npm start`, `npm test`, the demo and the bench use it unless REDIS_URL points
# elsewhere.
#
# Usage: bash scripts/redis.sh start|stop|status
#   start   start it daemonized unless it already runs; wait until it answers PING (and has loaded its AOF)
#   stop    SHUTDOWN (the AOF is flushed), then SIGKILL after 10 s; only the server this folder started
#   status  print what runs and exit 0, or exit 1 when it is not running
#
# Environment:
#   REDIS_PORT         port on 127.0.0.1                      default 6390
#   REDIS_DIR          data, pid file, log (relative = repo)  default .cache/redis
#   REDIS_APPENDFSYNC  everysec | always                      default everysec
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PORT="${REDIS_PORT:-6390}"
DIR="${REDIS_DIR:-.cache/redis}"
case "$DIR" in /*) ;; *) DIR="$ROOT_DIR/$DIR" ;; esac
FSYNC="${REDIS_APPENDFSYNC:-everysec}"
PID_FILE="$DIR/redis.pid"
LOG_FILE="$DIR/redis.log"

fail() {
  echo "redis: $*" >&2
  exit 1
}

case "$FSYNC" in everysec | always) ;; *) fail "REDIS_APPENDFSYNC must be everysec or always, got \"$FSYNC\"" ;; esac
[[ "$PORT" =~ ^[0-9]+$ ]] || fail "REDIS_PORT must be a port number, got \"$PORT\""

answers() { [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ]; }
our_pid() {
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  command -v redis-server >/dev/null || fail "redis-server is not installed (apt-get install redis-server)"
  mkdir -p "$DIR"
  # Two commands starting it at once (npm start and npm test) must not race for the port.
  exec 9>"$DIR/.lock"
  flock 9
  if our_pid >/dev/null && answers; then
    # An explicit choice applies to the running server too, without a restart.
    if [ -n "${REDIS_APPENDFSYNC:-}" ]; then
      redis-cli -h 127.0.0.1 -p "$PORT" config set appendfsync "$FSYNC" >/dev/null
    fi
    return 0
  fi
  if answers; then
    echo "redis: a Redis not started from $DIR already answers on 127.0.0.1:$PORT; using it"
    return 0
  fi
  echo "redis: starting on 127.0.0.1:$PORT (appendonly yes, appendfsync $FSYNC, data in $DIR)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --dir "$DIR" \
    --pidfile "$PID_FILE" --logfile "$LOG_FILE" \
    --appendonly yes --appendfsync "$FSYNC" --save "" 9>&- \
    || fail "redis-server did not start; see $LOG_FILE"
  # PING answers LOADING while the AOF is replayed: wait for PONG.
  for _ in $(seq 1 600); do
    if answers; then return 0; fi
    sleep 0.1
  done
  fail "redis-server did not answer on 127.0.0.1:$PORT within 60 s; see $LOG_FILE"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PID_FILE"
    echo "redis: not running (no live pid in $PID_FILE)"
    return 0
  fi
  redis-cli -h 127.0.0.1 -p "$PORT" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "redis: stopped (pid $pid)"
      return 0
    fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  echo "redis: killed (pid $pid) after 10 s"
}

status() {
  local pid
  if pid=$(our_pid) && answers; then
    echo "redis: running on 127.0.0.1:$PORT (pid $pid, data in $DIR)"
    return 0
  fi
  if answers; then
    echo "redis: a Redis not started from $DIR answers on 127.0.0.1:$PORT"
    return 0
  fi
  echo "redis: not running on 127.0.0.1:$PORT"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) fail "usage: bash scripts/redis.sh start|stop|status" ;;
esac
