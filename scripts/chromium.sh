#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser test (test/dashboard.test.ts, driven by playwright-core).
# A no-op when /usr/bin/chromium is there; otherwise installs it with apt (root, or sudo without a password).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "scripts/chromium.sh: /usr/bin/chromium is missing; install it with: sudo apt-get install -y chromium" >&2
  exit 1
fi
echo "scripts/chromium.sh: installing Debian's chromium for the dashboard test (once)" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
