#!/usr/bin/env bash
# Debian's Chromium for the browser tests (test/dashboard*.test.ts, test/proof-of-work-browser.test.ts, driven
# by playwright-core). A no-op when /usr/bin/chromium is there; otherwise installs it with apt.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
source "$(dirname "$0")/apt-install.sh"
apt_install chromium "the browser tests"
