#!/usr/bin/env bash
# Install the Debian packages sortpoint's tests and camera decoder need, where we can.
# libzbar0: pyzbar's shared library (the alternative QR decoder).
# chromium: the browser tests/kiosk/test_ui.py drives through Playwright (the kiosk page).
set -uo pipefail
PKGS="libzbar0 chromium"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo -n"
if command -v apt-get >/dev/null; then
    echo "installing Debian packages:$missing" >&2
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null 2>&1 \
        || echo "warning: could not install$missing; tests that need them will fail" >&2
else
    echo "warning: no apt-get; please install:$missing" >&2
fi
