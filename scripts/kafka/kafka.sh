#!/usr/bin/env bash
# Local single-node Apache Kafka 4.x broker (KRaft, combined broker+controller)
# for Coupon Rush tests and local development. No Docker, no Kafka install:
# the broker jars are fetched once from Maven Central (see ./pom.xml) into
# <repo>/.cache/kafka/libs and started straight from there with `java`.
#
# Usage: bash scripts/kafka/kafka.sh <command>
#   start      fetch jars (first run only), format storage (first run only),
#              start the broker in the background and wait until it serves
#              clients on 127.0.0.1:$KAFKA_PORT
#   stop       SIGTERM (controlled shutdown, up to 30 s), then SIGKILL
#   status     print "running" and exit 0 if the broker is up, else exit 1
#   reset      stop + delete the data dir (all topics/offsets are lost)
#   run-class  <main class> [args...]  run a Kafka CLI class from the cached jars,
#              e.g. run-class org.apache.kafka.tools.TopicCommand \
#                     --bootstrap-server 127.0.0.1:9092 --list
#
# Environment:
#   KAFKA_PORT             client (PLAINTEXT) port          default 9092
#   KAFKA_CONTROLLER_PORT  KRaft controller port            default 9093
#   KAFKA_DATA_DIR         log.dirs (relative = to repo)    default .cache/kafka/data
#   KAFKA_HEAP_OPTS        broker heap                      default "-Xmx512m -Xms256m"
#   KAFKA_LOG_LEVEL        broker root log level            default INFO
#   KAFKA_START_TIMEOUT    seconds to wait for readiness    default 90
#   JAVA_HOME              java used is $JAVA_HOME/bin/java if set (needs Java 17+)
#
# Files (all under <repo>/.cache/kafka, git-ignored): libs/ (jars),
# server.properties, log4j2.xml, broker.log (log4j), broker.out (JVM stdout/err),
# kafka.pid, kafka.port, maven.log. One broker per checkout.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT_DIR="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
POM="$SCRIPT_DIR/pom.xml"

CACHE_DIR="$ROOT_DIR/.cache/kafka"
LIBS_DIR="$CACHE_DIR/libs"
LIBS_MARKER="$LIBS_DIR/.fetch-complete"
PID_FILE="$CACHE_DIR/kafka.pid"
PORT_FILE="$CACHE_DIR/kafka.port"
SERVER_PROPS="$CACHE_DIR/server.properties"
LOG4J_BROKER="$CACHE_DIR/log4j2.xml"
LOG4J_TOOLS="$CACHE_DIR/log4j2-tools.xml"
ADMIN_PROPS="$CACHE_DIR/readiness-admin.properties"
BROKER_LOG="$CACHE_DIR/broker.log"
BROKER_OUT="$CACHE_DIR/broker.out"
MAVEN_LOG="$CACHE_DIR/maven.log"
LOCK_FILE="$CACHE_DIR/.lock"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$CACHE_DIR/data}"
case "$KAFKA_DATA_DIR" in /*) ;; *) KAFKA_DATA_DIR="$ROOT_DIR/$KAFKA_DATA_DIR" ;; esac
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
KAFKA_LOG_LEVEL="${KAFKA_LOG_LEVEL:-INFO}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA="java"; fi
CLASSPATH_GLOB="$LIBS_DIR/*"
# Short-lived CLI JVMs: fast startup matters more than throughput.
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$LOG4J_TOOLS")

log() { echo "kafka: $*"; }
die() { echo "kafka: error: $*" >&2; exit 1; }

validate_port() {
  [[ "$2" =~ ^[0-9]+$ ]] && (("$2" > 0 && "$2" < 65536)) || die "$1 must be a TCP port, got '$2'"
}

# --- small portable helpers (Linux + macOS; flock/setsid/timeout optional) -----

have() { command -v "$1" >/dev/null 2>&1; }

file_hash() {
  if have sha256sum; then sha256sum "$1" | cut -d' ' -f1
  elif have shasum; then shasum -a 256 "$1" | cut -d' ' -f1
  else cksum "$1" | cut -d' ' -f1-2; fi
}

with_timeout() { # with_timeout SECONDS cmd...
  local secs="$1"; shift
  if have timeout; then timeout "$secs" "$@"; else "$@"; fi
}

port_open() { # port_open PORT -> 0 if something accepts TCP on 127.0.0.1:PORT
  with_timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" >/dev/null 2>&1
}

# Is PID alive and really our broker (guards against PID reuse)?
is_our_broker() {
  local pid="$1" args
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  args="$(ps -p "$pid" -o args= 2>/dev/null || true)"
  [[ "$args" == *kafka.Kafka* && "$args" == *"$SERVER_PROPS"* ]]
}

read_pid() { [[ -f "$PID_FILE" ]] && tr -dc '0-9' <"$PID_FILE" || true; }
read_running_port() { [[ -f "$PORT_FILE" ]] && tr -dc '0-9' <"$PORT_FILE" || true; }

# Serialise start/stop/reset between concurrent invocations (e.g. parallel test
# workers). fd 9 must not leak into the broker process (see launch_broker).
take_lock() {
  mkdir -p "$CACHE_DIR"
  if have flock; then
    exec 9>"$LOCK_FILE"
    flock -w 600 9 || die "timed out waiting for $LOCK_FILE"
  fi
}

require_java17() {
  have "$JAVA" || [[ -x "$JAVA" ]] || die "java not found (Kafka 4.x needs Java 17+)"
  local v major
  v="$("$JAVA" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  major="${v%%.*}"
  [[ "$major" == "1" ]] && major="$(echo "$v" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot parse java version from '$("$JAVA" -version 2>&1 | head -1)'"
  ((major >= 17)) || die "Kafka 4.x broker needs Java 17+, found Java $v ($JAVA)"
}

# --- jars -------------------------------------------------------------------

ensure_jars() {
  local want
  want="$(file_hash "$POM")"
  if [[ -f "$LIBS_MARKER" && "$(cat "$LIBS_MARKER")" == "$want" ]]; then
    return 0
  fi
  have mvn || die "mvn (Maven) not found; it is needed once to fetch the Kafka jars"
  log "fetching Kafka jars with Maven (first run only)..."
  local tmp="$CACHE_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
      -DoutputDirectory="$tmp" -DincludeScope=runtime >"$MAVEN_LOG" 2>&1; then
    rm -rf "$tmp"
    tail -n 40 "$MAVEN_LOG" >&2 || true
    die "Maven fetch failed (full output: $MAVEN_LOG)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "Maven succeeded but no kafka_2.13 jar in $tmp"; }
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  echo "$want" >"$LIBS_MARKER"
}

run_class() { # run_class MainClass args...  (CLI tools, quiet logging)
  "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$CLASSPATH_GLOB" "$@"
}

# --- config files ------------------------------------------------------------

write_configs() {
  mkdir -p "$CACHE_DIR" "$KAFKA_DATA_DIR"
  cat >"$SERVER_PROPS" <<EOF
# Generated by scripts/kafka/kafka.sh on every start -- edits are overwritten.
# Single-node KRaft: this process is both broker and (sole) controller.
process.roles=broker,controller
node.id=1
# Static quorum (the pre-KIP-853 style, still supported in 4.x). Chosen over
# controller.quorum.bootstrap.servers + "format --standalone" because the voter
# endpoint then lives only in this file, so KAFKA_CONTROLLER_PORT can change
# between runs without reformatting the data dir.
controller.quorum.voters=1@127.0.0.1:${KAFKA_CONTROLLER_PORT}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=${KAFKA_DATA_DIR}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true

# Internal topics default to replication factor 3, impossible on one node.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=5

# Tests: no 3 s wait before the first consumer-group rebalance.
group.initial.rebalance.delay.ms=0

# Small machine / dev box.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=104857600
EOF

  cat >"$LOG4J_BROKER" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/kafka/kafka.sh -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName="${BROKER_LOG}" filePattern="${BROKER_LOG}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="${KAFKA_LOG_LEVEL}"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
  </Loggers>
</Configuration>
EOF

  write_tool_configs
}

write_tool_configs() {
  mkdir -p "$CACHE_DIR"
  cat >"$LOG4J_TOOLS" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/kafka/kafka.sh: CLI tools log warnings to stderr only -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
EOF

  cat >"$ADMIN_PROPS" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

format_storage_if_needed() {
  [[ -f "$KAFKA_DATA_DIR/meta.properties" ]] && return 0
  local cluster_id
  cluster_id="$(run_class kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 | tr -d '[:space:]')"
  [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid produced no cluster id"
  log "formatting KRaft storage in $KAFKA_DATA_DIR (cluster id $cluster_id)"
  if ! run_class kafka.tools.StorageTool format -t "$cluster_id" -c "$SERVER_PROPS" \
      >"$CACHE_DIR/format.log" 2>&1; then
    cat "$CACHE_DIR/format.log" >&2
    die "storage format failed"
  fi
}

# --- lifecycle ----------------------------------------------------------------

launch_broker() {
  : >"$BROKER_OUT"
  if [[ -f "$BROKER_LOG" ]]; then BROKER_LOG_START_LINE="$(wc -l <"$BROKER_LOG" | tr -dc '0-9')"; fi
  rm -f "$PID_FILE"
  local -a launcher=()
  have setsid && launcher=(setsid) # own session: survives Ctrl-C of the caller
  # The inner bash records its own PID and execs java, so the PID file holds the
  # java PID whether or not setsid forks. 9>&- : don't inherit the lock fd.
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is intentionally word-split
  nohup ${launcher[@]+"${launcher[@]}"} bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$JAVA" $KAFKA_HEAP_OPTS \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$LOG4J_BROKER" "-Dkafka.logs.dir=$CACHE_DIR" \
    -cp "$CLASSPATH_GLOB" kafka.Kafka "$SERVER_PROPS" \
    </dev/null >>"$BROKER_OUT" 2>&1 9>&- &
  local i
  for i in $(seq 1 100); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.05
  done
  [[ -s "$PID_FILE" ]] || die "broker process did not start (see $BROKER_OUT)"
  echo "$KAFKA_PORT" >"$PORT_FILE"
}

BROKER_LOG_START_LINE=0 # broker.log lines written before this start

print_failure_logs() {
  {
    echo "----- tail of $BROKER_OUT -----"
    tail -n 20 "$BROKER_OUT" 2>/dev/null || true
    echo "----- tail of $BROKER_LOG (this start only) -----"
    tail -n "+$((BROKER_LOG_START_LINE + 1))" "$BROKER_LOG" 2>/dev/null | tail -n 40 || true
  } >&2
}

# Wait until the broker answers a real Kafka request (Admin listTopics via
# TopicCommand), not just until the TCP port is bound.
wait_ready() {
  local pid="$1" start now
  start="$(date +%s)"
  while :; do
    now="$(date +%s)"
    if ! is_our_broker "$pid"; then
      print_failure_logs
      rm -f "$PID_FILE" "$PORT_FILE"
      die "broker exited during startup"
    fi
    if ((now - start >= KAFKA_START_TIMEOUT)); then
      print_failure_logs
      die "broker not ready after ${KAFKA_START_TIMEOUT}s (still running as pid $pid; 'kafka.sh stop' to kill it)"
    fi
    if port_open "$KAFKA_PORT" &&
      with_timeout 30 "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$CLASSPATH_GLOB" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
        --command-config "$ADMIN_PROPS" --list >/dev/null 2>&1; then
      return 0
    fi
    sleep 1
  done
}

cmd_start() {
  validate_port KAFKA_PORT "$KAFKA_PORT"
  validate_port KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
  take_lock
  local t0 pid running_port
  t0="$(date +%s)"

  pid="$(read_pid)"
  if [[ -n "$pid" ]] && is_our_broker "$pid"; then
    running_port="$(read_running_port)"
    running_port="${running_port:-$KAFKA_PORT}"
    if [[ "$running_port" != "$KAFKA_PORT" ]]; then
      die "broker already running (pid $pid) on 127.0.0.1:$running_port, not $KAFKA_PORT; run 'kafka.sh stop' first"
    fi
    if port_open "$KAFKA_PORT"; then
      log "already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
      return 0
    fi
    log "broker (pid $pid) is starting; waiting for it..."
    ensure_jars
    wait_ready "$pid"
    log "ready on 127.0.0.1:$KAFKA_PORT (pid $pid)"
    return 0
  fi
  rm -f "$PID_FILE" "$PORT_FILE"

  require_java17
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port 127.0.0.1:$p is already in use by another process (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
    fi
  done

  ensure_jars
  write_configs
  format_storage_if_needed
  launch_broker
  pid="$(read_pid)"
  wait_ready "$pid"
  log "ready on 127.0.0.1:$KAFKA_PORT (pid $pid, $(($(date +%s) - t0))s, log $BROKER_LOG)"
}

stop_locked() {
  local pid i
  pid="$(read_pid)"
  if [[ -z "$pid" ]] || ! is_our_broker "$pid"; then
    rm -f "$PID_FILE" "$PORT_FILE"
    log "not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "no exit after ${STOP_TIMEOUT}s, sending SIGKILL to pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
  fi
  kill -0 "$pid" 2>/dev/null && die "pid $pid still alive after SIGKILL"
  rm -f "$PID_FILE" "$PORT_FILE"
  log "stopped"
}

cmd_stop() {
  take_lock
  stop_locked
}

cmd_status() {
  local pid port
  pid="$(read_pid)"
  port="$(read_running_port)"
  port="${port:-$KAFKA_PORT}"
  if [[ -n "$pid" ]] && is_our_broker "$pid" && port_open "$port"; then
    echo "running"
    return 0
  fi
  if [[ -n "$pid" ]] && is_our_broker "$pid"; then
    echo "starting"
  else
    echo "not running"
  fi
  return 1
}

cmd_reset() {
  take_lock
  stop_locked
  if [[ -d "$KAFKA_DATA_DIR" ]]; then
    case "$KAFKA_DATA_DIR/" in
      "$CACHE_DIR"/*) ;;
      *)
        # Outside .cache/kafka: only delete what is clearly a Kafka data dir.
        if [[ -n "$(ls -A "$KAFKA_DATA_DIR")" && ! -f "$KAFKA_DATA_DIR/meta.properties" ]]; then
          die "refusing to delete $KAFKA_DATA_DIR: not empty and no meta.properties"
        fi
        ;;
    esac
    rm -rf "$KAFKA_DATA_DIR"
  fi
  log "data dir $KAFKA_DATA_DIR wiped"
}

cmd_run_class() {
  (($# >= 1)) || die "usage: kafka.sh run-class <main class> [args...]"
  take_lock
  ensure_jars
  if have flock; then exec 9>&-; fi
  write_tool_configs
  exec "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$CLASSPATH_GLOB" "$@"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  (($# > 0)) && shift
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    run-class) cmd_run_class "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
