#!/usr/bin/env bash
# The dashboard's browser test (tests/test_dashboard.py) drives Debian's Chromium through Playwright,
# which never downloads a browser of its own. Make sure /usr/bin/chromium is there: install Debian's
# package with apt when we are root or have passwordless sudo; otherwise say, in one line, how to.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=(env DEBIAN_FRONTEND=noninteractive)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
    echo "$CHROMIUM is missing and the browser test needs it: run 'sudo apt-get install --no-install-recommends chromium', then make test again" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$CHROMIUM is missing and this machine has no apt-get: install Chromium so that $CHROMIUM runs it, then make test again" >&2
    exit 1
fi

echo "installing Debian's chromium for the browser test (apt-get)" >&2
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
"$CHROMIUM" --version >&2
