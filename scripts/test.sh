#!/usr/bin/env bash
# `npm test`: install if needed, make sure the servers are up, lint, type-check, then run every test
# against the real Redis, Postgres and Kafka broker.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/node ] && [ -d node_modules/fastify ] || npm install --no-audit --no-fund
bash scripts/services.sh
node_modules/.bin/biome check .
node_modules/.bin/tsc -p .
if [ "${SKIP_KAFKA:-}" != "1" ]; then bash scripts/kafka/kafka.sh start; fi
exec node_modules/.bin/node --test --test-concurrency=2 "${@:-test/}"
