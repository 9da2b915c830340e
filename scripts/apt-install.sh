#!/usr/bin/env bash
# Sourced by scripts/chromium.sh and scripts/prometheus.sh: `apt_install PACKAGE WHAT` installs one Debian
# package with apt (as root, or with sudo without a password), or says in one line how to, and fails.
apt_install() {
  local package="$1" what="$2" sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "$package is missing (needed for $what); install it with: sudo apt-get install -y $package" >&2
      return 1
    fi
  fi
  echo "installing Debian's $package for $what (once)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package lists of a fresh machine may be missing or old (a version the mirror no longer has).
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}
