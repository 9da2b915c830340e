#!/usr/bin/env bash
# The ceiling of one coupon: all of a coupon's keys share one hash tag, so one Redis core runs every
# admission of that coupon. This measures that core with `redis-benchmark` running the real admission
# script (src/redis/scripts/admitStream-4.lua, by EVALSHA as the service does) against a redis-server
# started here on a free port with its own temporary folder (AOF everysec, like scripts/redis.sh), with a
# distinct random user per request, unpipelined and pipelined (-P 16). Two cases: stock left (every request
# is admitted: the longest path, five writes) and sold out (the common case in a rush: two reads, one
# counter). The machine's Redis is not touched.
#
# Usage: bash scripts/admission-ceiling.sh
# Environment: ADMISSION_REQUESTS (default 200000), ADMISSION_CLIENTS (default 50),
#              ADMISSION_PIPELINE (default 16), ADMISSION_APPENDONLY yes|no (default yes)
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCRIPT="$ROOT_DIR/src/redis/scripts/admitStream-4.lua"
REQUESTS="${ADMISSION_REQUESTS:-200000}"
CLIENTS="${ADMISSION_CLIENTS:-50}"
PIPELINE="${ADMISSION_PIPELINE:-16}"
APPENDONLY="${ADMISSION_APPENDONLY:-yes}"
HOST=127.0.0.1
# The service's key layout: prefix, coupon hash tag, key name (src/redis/keys.ts).
STATE='cr:{c:1}:state'
USERS='cr:{c:1}:users'
STREAM='cr:{c:1}:stream'
PREQUEUE='cr:{c:1}:prequeue'

command -v redis-benchmark >/dev/null || { echo "redis-benchmark is not installed" >&2; exit 1; }

in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
PORT=0
for _ in $(seq 1 100); do
  candidate=$((20000 + RANDOM % 10000))
  if ! in_use "$candidate"; then PORT=$candidate; break; fi
done
((PORT > 0)) || { echo "no free port" >&2; exit 1; }

DATA_DIR="$(mktemp -d -t coupon-rush-ceiling-XXXXXX)"
redis-server --port "$PORT" --bind "$HOST" --dir "$DATA_DIR" --save '' --appendonly "$APPENDONLY" \
  --appendfsync everysec --daemonize yes --pidfile "$DATA_DIR/redis.pid" --logfile "$DATA_DIR/redis.log"
cleanup() {
  redis-cli -h "$HOST" -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$DATA_DIR"
}
trap cleanup EXIT
cli() { redis-cli -h "$HOST" -p "$PORT" "$@"; }
until [[ "$(cli ping 2>/dev/null)" == PONG ]]; do sleep 0.1; done

# The Lua as the service loads it: its `--- @include` lines resolved by src/redis/scripts.ts.
LUA="$("$ROOT_DIR/node_modules/.bin/node" -e \
  "import('$ROOT_DIR/src/redis/scripts.ts').then((m) => process.stdout.write(m.scriptSource('admitStream')))")"
SHA="$(cli script load "$LUA")"

# prepare STOCK: the state hash the script expects (header: stock, seq, soldOut), no users, no stream.
prepare() {
  cli del "$STATE" "$USERS" "$STREAM" >/dev/null
  cli hset "$STATE" stock "$1" seq 0 soldOut 0 >/dev/null
}

# CPU seconds redis-server has used (user + system): the box is shared, so requests per Redis CPU-second
# say what one dedicated core would do better than requests per wall-clock second.
cpu_seconds() {
  cli info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { total += $2 } END { printf "%.3f", total }'
}

measure() {
  local label="$1" stock="$2" pipeline="$3"
  prepare "$stock"
  local command=(redis-benchmark -h "$HOST" -p "$PORT" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" -r 1000000000 -q
    EVALSHA "$SHA" 4 "$STATE" "$USERS" "$STREAM" "$PREQUEUE" 'cr:wake-up' 'u:__rand_int__')
  echo "## $label, -P $pipeline"
  echo "\$ ${command[*]}"
  local before after
  before="$(cpu_seconds)"
  "${command[@]}" 2>&1 | tr '\r' '\n' | grep -v '^ *$' | tail -1
  after="$(cpu_seconds)"
  awk -v n="$REQUESTS" -v b="$before" -v a="$after" \
    'BEGIN { printf "redis-server CPU: %.2f s, %.0f requests per Redis CPU-second\n", a - b, n / (a - b) }'
  echo "admitted: $(cli hget "$STATE" seq), refused as sold out: $(cli hget "$STATE" soldOut), stream length: $(cli xlen "$STREAM")"
  echo
}

echo "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on $HOST:$PORT, appendonly $APPENDONLY; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "admission script: ${SCRIPT#"$ROOT_DIR"/} (sha $SHA)"
echo
measure 'stock left (every request admitted)' 1000000000000 1
measure 'stock left (every request admitted)' 1000000000000 "$PIPELINE"
measure 'sold out (every request refused)' 0 1
measure 'sold out (every request refused)' 0 "$PIPELINE"
echo "## baseline: plain SET on the same server"
redis-benchmark -h "$HOST" -p "$PORT" -n "$REQUESTS" -c "$CLIENTS" -q -t set 2>&1 | tr '\r' '\n' | grep -v '^ *$' | tail -1
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
