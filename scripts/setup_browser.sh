#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for scripts/browser_check.py (the README's test command opens the built book in
# a real headless browser). Idempotent: does nothing when both are installed.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[browser] no apt-get here: install Chromium and ChromeDriver as /usr/bin/chromium and /usr/bin/chromedriver," \
       "or skip the browser check with CATLIB_SKIP_BROWSER=1"
  exit 1
fi
SUDO="env DEBIAN_FRONTEND=noninteractive"
if [ "$(id -u)" != 0 ]; then SUDO="sudo -n env DEBIAN_FRONTEND=noninteractive"; fi
echo "[browser] installing Debian's chromium and chromium-driver (about a minute)"
if ! $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null 2>&1 || true
  $SUDO apt-get install -y -q chromium chromium-driver >/dev/null || {
    echo "[browser] could not install chromium and chromium-driver (root or sudo is needed);" \
         "install them, or skip the browser check with CATLIB_SKIP_BROWSER=1"
    exit 1
  }
fi
