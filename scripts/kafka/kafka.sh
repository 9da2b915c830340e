#!/usr/bin/env bash
# A local single-node Kafka 4 broker (KRaft: broker and controller in one process) for tests and development,
# from the org.apache.kafka:kafka_2.13 jars Maven fetches once (scripts/kafka/pom.xml) into .cache/kafka/libs.
#   start   start it in the background and wait until it answers; does nothing if a broker already answers
#   stop    stop the broker this checkout started (SIGTERM, SIGKILL after 30 s); never another one
#   status  exit 0 if a broker answers on 127.0.0.1:$KAFKA_PORT
#   reset   stop, then delete the data folder
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_DIR (.cache/kafka), KAFKA_HEAP_OPTS.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd -P)"
port="${KAFKA_PORT:-9092}" controller="${KAFKA_CONTROLLER_PORT:-9093}"
dir="${KAFKA_DIR:-$root/.cache/kafka}" pom="$root/scripts/kafka/pom.xml"
props="$dir/server.properties" pidfile="$dir/kafka.pid" log="$dir/broker.out"
say() { echo "kafka: $*"; }
die() { echo "kafka: $*" >&2; exit 1; }

# A real Kafka answer, not just an open port: ApiVersions v0 (correlation id 1) must come back with id 1.
answers() {
  local reply
  reply="$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf '\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff' >&3 && head -c 8 <&3 | od -An -tx1" 2>/dev/null)" || return 1
  [[ "${reply//[[:space:]]/}" == ????????00000001 ]]
}
# The pid file's process, if it is still this checkout's broker (pids get reused).
own_pid() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [[ -n "$pid" ]] && ps -p "$pid" -o args= 2>/dev/null | grep -qF "kafka.Kafka $props" && echo "$pid"
}

start() {
  mkdir -p "$dir" && exec 9>"$dir/.lock" && flock -w 600 9 # one start/stop at a time
  if answers; then say "a broker already answers on 127.0.0.1:$port"; return; fi
  [[ -z "$(own_pid)" ]] || die "broker $(own_pid) runs but does not answer on $port (see $log; npm run kafka:stop)"
  if [[ "$(cat "$dir/libs/.pom" 2>/dev/null)" != "$(sha256sum <"$pom")" ]]; then
    say "fetching the Kafka jars with Maven (once)"
    rm -rf "$dir/libs"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/libs" \
      >"$dir/maven.log" 2>&1 || die "Maven could not fetch the jars (see $dir/maven.log)"
    sha256sum <"$pom" >"$dir/libs/.pom"
  fi
  cat >"$props" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
  local java=(java -cp "$dir/libs/*" -Dorg.apache.logging.log4j.level=WARN)
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local id
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    "${java[@]}" kafka.tools.StorageTool format -t "$id" -c "$props" >"$log" 2>&1 || die "formatting failed (see $log)"
  fi
  # Its own session, so a Ctrl-C of the caller does not reach it; the lock is not inherited.
  setsid nohup "${java[@]}" ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} kafka.Kafka "$props" >"$log" 2>&1 9>&- &
  echo $! >"$pidfile"
  for _ in $(seq 90); do
    if answers; then say "ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return; fi
    [[ -n "$(own_pid)" ]] || { tail -n 20 "$log" >&2; die "the broker exited during start-up"; }
    sleep 1
  done
  die "no answer on 127.0.0.1:$port after 90 s (see $log; npm run kafka:stop)"
}

stop() {
  mkdir -p "$dir" && exec 9>"$dir/.lock" && flock -w 600 9
  local pid
  pid="$(own_pid)" || { say "not running (from this checkout)"; return; }
  kill -TERM "$pid"
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null && say "killed $pid after 30 s" || say "stopped"
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if answers; then echo running; else echo "not running"; exit 1; fi ;;
  reset) stop && rm -rf "$dir/data" && say "data deleted" ;;
  *) sed -n '2,8s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
