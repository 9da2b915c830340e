#!/usr/bin/env bash
# `npm test`: install if needed, make sure the servers are up (Redis, Postgres, a Kafka broker), lint,
# type-check, then run every test against them. Arguments narrow the run to some test files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
bash scripts/chromium.sh
bash scripts/prometheus.sh
node_modules/.bin/biome check .
node_modules/.bin/tsc -p .
if [ "${SKIP_KAFKA:-}" != "1" ]; then bash scripts/kafka/kafka.sh start; fi
if [ $# -eq 0 ]; then set -- 'test/**/*.test.ts'; fi
exec node_modules/.bin/node --test --test-concurrency=2 "$@"
