#!/usr/bin/env bash
# Install (or update) a sortpoint kiosk on a Raspberry Pi; safe to run again.
#
#   sudo scripts/install-pi.sh            # install / update
#   scripts/install-pi.sh --dry-run       # print what it would do, change nothing
#   sudo scripts/install-pi.sh --with-ui  # also show the touch-screen page in Chromium
#
# What it does, each step skipped when already done:
#   1. Debian packages: python3-venv (the venv), libzbar0 (pyzbar);
#   2. a system user `sortpoint` in the gpio, dialout and video groups;
#   3. a venv in $PREFIX/venv with sortpoint and its `pi` extra. On a Pi 5 (read from
#      /proc/device-tree/model) RPi.GPIO does not work: rpi-lgpio, a drop-in module with the
#      same `RPi.GPIO` API, is installed instead (the two cannot be installed side by side);
#   4. the systemd unit (deploy/sortpoint-kiosk.service) and the scanner's udev rule
#      (deploy/99-sortpoint-scanner.rules, a stable /dev/sortpoint-scanner);
#   5. /etc/sortpoint/kiosk.toml from kiosk/example.toml if there is none (never overwritten:
#      it holds the kiosk's secret), readable by root and the sortpoint group only;
#   6. systemctl daemon-reload and enable (start it yourself once the config is edited);
#   7. with --with-ui: the user unit deploy/sortpoint-kiosk-ui.service (Chromium in kiosk mode
#      on the kiosk's page) into $USER_UNIT_DIR, enabled for the desktop session of every user.
#
# Paths can be moved for a test or an image build: PREFIX (/opt/sortpoint), ETC_DIR
# (/etc/sortpoint), UNIT_DIR (/etc/systemd/system), USER_UNIT_DIR (/etc/systemd/user),
# UDEV_DIR (/etc/udev/rules.d),
# MODEL_FILE (/proc/device-tree/model), PYTHON (python3).
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${PREFIX:-/opt/sortpoint}"
ETC_DIR="${ETC_DIR:-/etc/sortpoint}"
UNIT_DIR="${UNIT_DIR:-/etc/systemd/system}"
UDEV_DIR="${UDEV_DIR:-/etc/udev/rules.d}"
USER_UNIT_DIR="${USER_UNIT_DIR:-/etc/systemd/user}"
MODEL_FILE="${MODEL_FILE:-/proc/device-tree/model}"
PYTHON="${PYTHON:-python3}"
SERVICE_USER=sortpoint
UNIT=sortpoint-kiosk.service
RULE=99-sortpoint-scanner.rules
UI_UNIT=sortpoint-kiosk-ui.service
DRY_RUN=0
WITH_UI=0

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

for arg in "$@"; do
    case "$arg" in
        --dry-run|-n) DRY_RUN=1 ;;
        --with-ui) WITH_UI=1 ;;
        --help|-h) usage; exit 0 ;;
        *) echo "install-pi.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf '== %s\n' "$*"; }
# run CMD...: print it; execute it unless --dry-run
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "install-pi.sh: run as root (sudo), or with --dry-run to see what it would do" >&2
    exit 1
fi

# -- which Pi ------------------------------------------------------------------------
MODEL=""
if [ -r "$MODEL_FILE" ]; then MODEL="$(tr -d '\0' < "$MODEL_FILE")"; fi
case "$MODEL" in
    "Raspberry Pi 5"*|"Raspberry Pi Compute Module 5"*) GPIO_PACKAGE=rpi-lgpio ;;
    *) GPIO_PACKAGE=RPi.GPIO ;;
esac
say "machine: ${MODEL:-unknown (not a Raspberry Pi?)}; GPIO module: $GPIO_PACKAGE"

# -- 1. system packages --------------------------------------------------------------
missing=()
for pkg in python3-venv libzbar0; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    run apt-get update
    run apt-get install -y "${missing[@]}"
else
    say "Debian packages present"
fi

# -- 2. service user -----------------------------------------------------------------
if id "$SERVICE_USER" >/dev/null 2>&1; then
    say "user $SERVICE_USER exists"
else
    say "creating system user $SERVICE_USER"
    run useradd --system --home-dir /var/lib/sortpoint-kiosk --shell /usr/sbin/nologin "$SERVICE_USER"
fi
for group in gpio dialout video; do
    if getent group "$group" >/dev/null 2>&1; then
        id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$group" \
            || run usermod -a -G "$group" "$SERVICE_USER"
    fi
done

# -- 3. the venv and sortpoint -------------------------------------------------------
VENV="$PREFIX/venv"
if [ -x "$VENV/bin/python" ]; then
    say "venv $VENV exists"
else
    say "creating venv $VENV"
    run mkdir -p "$PREFIX"
    # system site packages: the Pi's apt-installed camera stack (python3-picamera2) stays visible
    run "$PYTHON" -m venv --system-site-packages "$VENV"
fi
run "$VENV/bin/pip" install --upgrade pip
if [ "$GPIO_PACKAGE" = rpi-lgpio ]; then
    # the `pi` extra minus RPi.GPIO, read from pyproject.toml so it stays in step with it
    mapfile -t PI_EXTRA < <("$PYTHON" - "$SRC/pyproject.toml" <<'PY'
import sys, tomllib
extra = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["pi"]
for req in extra:
    if not req.replace("_", ".").lower().startswith("rpi.gpio"):
        print(req)
PY
)
    if [ -d "$VENV" ] && "$VENV/bin/pip" show RPi.GPIO >/dev/null 2>&1; then
        run "$VENV/bin/pip" uninstall -y RPi.GPIO
    fi
    run "$VENV/bin/pip" install "$SRC" "${PI_EXTRA[@]}" rpi-lgpio
else
    run "$VENV/bin/pip" install "$SRC[pi]"
fi

# -- 4. unit and udev rule -----------------------------------------------------------
install_file() {  # install_file SRC DEST MODE: copy only when it differs
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        say "$2 is up to date"
        return 1
    fi
    run install -D -m "$3" "$1" "$2"
}
if install_file "$SRC/deploy/$UNIT" "$UNIT_DIR/$UNIT" 0644; then UNIT_CHANGED=1; else UNIT_CHANGED=0; fi
if install_file "$SRC/deploy/$RULE" "$UDEV_DIR/$RULE" 0644; then
    run udevadm control --reload-rules
    run udevadm trigger --subsystem-match=tty
fi

# -- 5. the config -------------------------------------------------------------------
CONFIG="$ETC_DIR/kiosk.toml"
if [ -f "$CONFIG" ]; then
    say "$CONFIG exists (left as it is)"
    NEW_CONFIG=0
else
    say "writing $CONFIG from kiosk/example.toml: edit it before starting the kiosk"
    run install -D -m 0640 "$SRC/kiosk/example.toml" "$CONFIG"
    run chgrp "$SERVICE_USER" "$CONFIG"
    NEW_CONFIG=1
fi

# -- 6. systemd ----------------------------------------------------------------------
if [ "$UNIT_CHANGED" = 1 ]; then
    run systemctl daemon-reload
fi
if systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then
    say "$UNIT enabled"
else
    run systemctl enable "$UNIT"
fi

# -- 7. the touch screen (optional) ---------------------------------------------------
if [ "$WITH_UI" = 1 ]; then
    install_file "$SRC/deploy/$UI_UNIT" "$USER_UNIT_DIR/$UI_UNIT" 0644 || true
    if systemctl --global is-enabled --quiet "$UI_UNIT" 2>/dev/null; then
        say "$UI_UNIT enabled for desktop sessions"
    else
        run systemctl --global enable "$UI_UNIT"
    fi
    command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
        || echo "   note: no Chromium found: apt-get install chromium (the page needs a desktop session)"
fi

say "done. Next:"
[ "$NEW_CONFIG" = 1 ] && echo "   - edit $CONFIG (backend url, kiosk id and secret, pins)"
echo "   - sudo -u $SERVICE_USER $VENV/bin/kiosk calibrate --config $CONFIG --known-g 5000"
echo "   - sudo -u $SERVICE_USER $VENV/bin/kiosk selftest --config $CONFIG"
echo "   - sudo systemctl restart $UNIT; $VENV/bin/kiosk status --config $CONFIG"
