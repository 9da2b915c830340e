#!/usr/bin/env bash
# A local Redis Cluster (3 masters + 3 replicas by default) from the installed `redis-server`, on loopback,
# for trying Coupon Rush on a cluster and for the cluster tests (bench/lib/redis-cluster.ts drives this
# script with its own ports and data folder). No download: Debian's redis-server and redis-cli.
#
# Usage: bash scripts/redis-cluster.sh start|stop|status|reset   (npm run redis:cluster -- start)
#   start   start every node that is not running (idempotent), create the cluster if it does not exist yet,
#           wait until cluster_state is ok, all 16384 slots are served and every master has its replicas,
#           then print the REDIS_CLUSTER_NODES value
#   stop    SHUTDOWN every node (the AOF is flushed; the cluster comes back as it was on the next start)
#   status  one line per node (port, role, state); exit 0 only when the cluster is ok
#   reset   stop, then delete the data folder (the next start creates a new cluster)
#
# Environment:
#   REDIS_CLUSTER_PORT          port of the first node; the others follow     default 7101 (7101-7106)
#   REDIS_CLUSTER_MASTERS       number of masters                             default 3
#   REDIS_CLUSTER_REPLICAS      replicas per master                           default 1
#   REDIS_CLUSTER_NODE_TIMEOUT  cluster-node-timeout in ms (failover speed)   default 2000
#   REDIS_CLUSTER_APPENDFSYNC   everysec | always | no                         default everysec
#   REDIS_CLUSTER_DIR           data folder (relative = to the repo)          default .cache/redis-cluster
#   REDIS_CLUSTER_TIMEOUT       seconds to wait for the cluster to be ok      default 30
# Each node keeps its config, nodes.conf, AOF, log and pid in <dir>/<port>/. The cluster bus of a node
# listens on its port + 10000 (Redis's default), so those ports must be free too.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BASE_PORT="${REDIS_CLUSTER_PORT:-7101}"
MASTERS="${REDIS_CLUSTER_MASTERS:-3}"
REPLICAS="${REDIS_CLUSTER_REPLICAS:-1}"
NODE_TIMEOUT="${REDIS_CLUSTER_NODE_TIMEOUT:-2000}"
APPENDFSYNC="${REDIS_CLUSTER_APPENDFSYNC:-everysec}"
DATA_DIR="${REDIS_CLUSTER_DIR:-.cache/redis-cluster}"
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$ROOT_DIR/$DATA_DIR" ;; esac
TIMEOUT="${REDIS_CLUSTER_TIMEOUT:-30}"
HOST=127.0.0.1

log() { echo "redis-cluster: $*"; }
die() { echo "redis-cluster: error: $*" >&2; exit 1; }

number() { [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a number, got '$2'"; }
number REDIS_CLUSTER_PORT "$BASE_PORT"
number REDIS_CLUSTER_MASTERS "$MASTERS"
number REDIS_CLUSTER_REPLICAS "$REPLICAS"
number REDIS_CLUSTER_NODE_TIMEOUT "$NODE_TIMEOUT"
number REDIS_CLUSTER_TIMEOUT "$TIMEOUT"
case "$APPENDFSYNC" in everysec | always | no) ;; *) die "REDIS_CLUSTER_APPENDFSYNC must be everysec, always or no" ;; esac
((MASTERS >= 3)) || die "Redis Cluster needs at least 3 masters, REDIS_CLUSTER_MASTERS is $MASTERS"
COUNT=$((MASTERS * (1 + REPLICAS)))
LAST_PORT=$((BASE_PORT + COUNT - 1))
((BASE_PORT > 0 && LAST_PORT + 10000 <= 65535)) || die "ports $BASE_PORT-$LAST_PORT (+10000 for the bus) do not fit"
PORTS=()
for ((i = 0; i < COUNT; i++)); do PORTS+=($((BASE_PORT + i))); done

# A timeout, so a port held by something that is not Redis cannot hang the script.
cli() { timeout 3 redis-cli -h "$HOST" -p "$1" "${@:2}"; }
serving() { [[ "$(cli "$1" ping 2>/dev/null)" == "PONG" ]]; }
# info_field PORT 'cluster info' FIELD: one field of a multi-word INFO-style command.
info_field() {
  local words
  read -ra words <<<"$2"
  cli "$1" "${words[@]}" 2>/dev/null | tr -d '\r' | sed -n "s/^$3://p"
}
nodes_value() {
  local list=()
  for port in "${PORTS[@]}"; do list+=("$HOST:$port"); done
  (IFS=,; echo "${list[*]}")
}

declare -A LOG_OFFSET=()

start_node() {
  local port="$1" dir="$DATA_DIR/$1"
  mkdir -p "$dir"
  touch "$dir/redis.log"
  LOG_OFFSET[$port]=$(($(wc -c <"$dir/redis.log") + 1))
  # Written on every start so a changed setting applies; nodes.conf (the cluster's memory) stays.
  cat >"$dir/redis.conf" <<EOF
port $port
bind $HOST
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $NODE_TIMEOUT
appendonly yes
appendfsync $APPENDFSYNC
save ""
# Replicas sync at once instead of waiting 5 s for more replicas to share one transfer.
repl-diskless-sync-delay 0
EOF
  redis-server "$dir/redis.conf" || die "redis-server on port $port did not start (see $dir/redis.log)"
}

wait_until() {
  local what="$1" deadline=$((SECONDS + TIMEOUT))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.1
  done
}

# A daemonised node that cannot bind its port (or rejects its config) exits after the fork: say so at once.
all_serving() {
  for port in "${PORTS[@]}"; do
    serving "$port" && continue
    local offset="${LOG_OFFSET[$port]:-}"
    if [[ -n "$offset" ]] && tail -c "+$offset" "$DATA_DIR/$port/redis.log" | grep -qE 'aborting|FATAL'; then
      die "redis-server on port $port exited: $(tail -c "+$offset" "$DATA_DIR/$port/redis.log" | grep -E 'Could not|aborting|FATAL' | head -1)"
    fi
    return 1
  done
}

# Something else answering PING on one of the ports would make the cluster wait forever.
all_cluster_nodes() {
  for port in "${PORTS[@]}"; do
    [[ "$(info_field "$port" 'info cluster' cluster_enabled)" == 1 ]] ||
      die "127.0.0.1:$port is served by a Redis that is not in cluster mode (set REDIS_CLUSTER_PORT)"
  done
}

# Every node sees the cluster ok with all slots served, and every master has its replicas online.
cluster_ready() {
  local masters=0
  for port in "${PORTS[@]}"; do
    [[ "$(info_field "$port" 'cluster info' cluster_state)" == ok ]] || return 1
    [[ "$(info_field "$port" 'cluster info' cluster_slots_ok)" == 16384 ]] || return 1
    [[ "$(info_field "$port" 'cluster info' cluster_known_nodes)" == "$COUNT" ]] || return 1
    if [[ "$(info_field "$port" 'info replication' role)" == master ]]; then
      masters=$((masters + 1))
      local online
      online="$(cli "$port" info replication 2>/dev/null | grep -c '^slave[0-9]*:.*state=online' || true)"
      ((online >= REPLICAS)) || return 1
    fi
  done
  ((masters == MASTERS))
}

start() {
  command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
  local started=0
  for port in "${PORTS[@]}"; do
    if serving "$port"; then continue; fi
    start_node "$port"
    started=$((started + 1))
  done
  wait_until "every node to answer PING" all_serving
  all_cluster_nodes
  # A fresh node knows only itself and serves no slot: create the cluster once. Nodes restarted from
  # their nodes.conf find each other again by themselves.
  if [[ "$(info_field "$BASE_PORT" 'cluster info' cluster_slots_assigned)" == 0 ]]; then
    local addresses=()
    for port in "${PORTS[@]}"; do addresses+=("$HOST:$port"); done
    log "creating the cluster ($MASTERS masters, $REPLICAS replica(s) each)"
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas "$REPLICAS" --cluster-yes >"$DATA_DIR/create.log" 2>&1 ||
      die "redis-cli --cluster create failed (see $DATA_DIR/create.log)"
  fi
  wait_until "cluster_state:ok with 16384 slots served and replicas online" cluster_ready
  log "ok: $COUNT nodes on $HOST:$BASE_PORT-$LAST_PORT ($started started now), data in $DATA_DIR"
  echo "REDIS_CLUSTER_NODES=$(nodes_value)"
}

stop() {
  for port in "${PORTS[@]}"; do
    local pidfile="$DATA_DIR/$port/redis.pid"
    if serving "$port"; then cli "$port" shutdown >/dev/null 2>&1 || true; fi
    local deadline=$((SECONDS + 10))
    while serving "$port" && ((SECONDS < deadline)); do sleep 0.1; done
    if serving "$port" && [[ -f "$pidfile" ]]; then kill -9 "$(cat "$pidfile")" 2>/dev/null || true; fi
    rm -f "$pidfile"
  done
  log "stopped $HOST:$BASE_PORT-$LAST_PORT"
}

status() {
  local ok=0
  for port in "${PORTS[@]}"; do
    if serving "$port"; then
      echo "$HOST:$port $(info_field "$port" 'info replication' role) cluster_state:$(info_field "$port" 'cluster info' cluster_state)"
    else
      echo "$HOST:$port down"
      ok=1
    fi
  done
  cluster_ready || ok=1
  if ((ok == 0)); then echo "REDIS_CLUSTER_NODES=$(nodes_value)"; fi
  return "$ok"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  reset)
    stop
    rm -rf "$DATA_DIR"
    log "removed $DATA_DIR"
    ;;
  *) die "usage: redis-cluster.sh start|stop|status|reset" ;;
esac
