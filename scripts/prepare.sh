#!/usr/bin/env bash
# Shared first step of `npm start`, `npm test`, `npm run demo` and `npm run bench` on a fresh machine:
# install the dependencies (with the pinned Node 24) if missing, then make sure Redis (the project's own
# durable one, scripts/redis.sh, unless REDIS_URL points elsewhere) and Postgres are up.
set -euo pipefail
cd "$(dirname "$0")/.."
# npm writes node_modules/.package-lock.json on every install: older than package-lock.json means a
# dependency was added or changed since (a pull), so install again.
if [ ! -x node_modules/.bin/node ] || [ ! -f node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "prepare: installing dependencies (npm ci; the pinned Node 24 comes with them)"
  # The system npm runs on an older Node and warns that every Node-24 package wants a newer engine: noise
  # here, since every script runs on the pinned Node; real errors still show.
  npm ci --no-audit --no-fund --loglevel=error
fi
bash scripts/services.sh
