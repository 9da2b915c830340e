#!/usr/bin/env bash
# Debian's Prometheus (prometheus + promtool) for the rule tests (test/monitoring-rules.test.ts) and the
# integration test (test/prometheus.test.ts) of deploy/prometheus/. A no-op when both are there; otherwise
# installs the `prometheus` package with apt (root, or sudo without a password). The package's service is
# not started: the tests run their own Prometheus on a free port.
set -euo pipefail
if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "scripts/prometheus.sh: prometheus/promtool are missing; install them with: sudo apt-get install -y prometheus" >&2
  exit 1
fi
echo "scripts/prometheus.sh: installing Debian's prometheus for the monitoring tests (once)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show prometheus >/dev/null 2>&1; then "${SUDO[@]}" apt-get update -qq; fi
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
