#!/usr/bin/env bash
# Makes sure Redis and PostgreSQL answer on loopback; starts them when installed but stopped.
set -euo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
postgres_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

wait_for() {
  local name=$1 check=$2
  for _ in $(seq 1 60); do
    if $check; then return 0; fi
    sleep 0.5
  done
  echo "services: $name did not come up on 127.0.0.1" >&2
  return 1
}

if ! redis_up; then
  if ! command -v redis-server >/dev/null; then
    echo "services: Redis is not running and redis-server is not installed (apt-get install redis-server)" >&2
    exit 1
  fi
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
fi

if ! postgres_up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "services: PostgreSQL is not running and not installed (apt-get install postgresql)" >&2
    exit 1
  fi
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  wait_for PostgreSQL postgres_up
fi
