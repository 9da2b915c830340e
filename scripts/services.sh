#!/usr/bin/env bash
# Makes sure Redis and PostgreSQL answer on loopback: the project's own durable Redis (scripts/redis.sh)
# unless REDIS_URL points at another one, and the machine's PostgreSQL, started when installed but stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

postgres_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

case "${REDIS_URL:-}" in
  "" | redis://127.0.0.1:6390 | redis://127.0.0.1:6390/* | redis://localhost:6390 | redis://localhost:6390/*)
    bash scripts/redis.sh start
    ;;
  *) ;; # the user's own Redis: the service checks it at startup and names REDIS_URL if it does not answer
esac

if ! postgres_up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "services: PostgreSQL is not running and not installed (apt-get install postgresql)" >&2
    exit 1
  fi
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  for _ in $(seq 1 60); do
    if postgres_up; then exit 0; fi
    sleep 0.5
  done
  echo "services: PostgreSQL did not come up on 127.0.0.1:5432" >&2
  exit 1
fi
