#!/usr/bin/env bash
# `npm start`: install if needed, make sure Redis and Postgres are up, then serve (migrating first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
exec node_modules/.bin/node bin/coupon-rush.mjs serve
