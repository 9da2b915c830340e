#!/usr/bin/env bash
# Debian's Prometheus (prometheus + promtool) for the rule tests (test/monitoring-rules.test.ts) and the
# integration test (test/prometheus.test.ts) of deploy/prometheus/. A no-op when both are there; otherwise
# installs the `prometheus` package with apt. The package's service is not started: the tests run their own
# Prometheus on a free port.
set -euo pipefail
if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then exit 0; fi
source "$(dirname "$0")/apt-install.sh"
apt_install prometheus "the monitoring tests"
