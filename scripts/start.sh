#!/usr/bin/env bash
# `npm start`: install if needed, make sure Redis and Postgres are up, then serve (migrating first).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/node ] && [ -d node_modules/fastify ] || npm install --no-audit --no-fund
bash scripts/services.sh
exec node_modules/.bin/node bin/coupon-rush.mjs serve
