#!/usr/bin/env bash
# Shared first step of `npm start`, `npm test`, `npm run demo` and `npm run bench` on a fresh machine:
# install the dependencies (with the pinned Node 24) if missing, then make sure Redis (the project's own
# durable one, scripts/redis.sh, unless REDIS_URL points elsewhere) and Postgres are up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/node ] || [ ! -d node_modules/fastify ]; then
  echo "prepare: installing dependencies"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi
bash scripts/services.sh
