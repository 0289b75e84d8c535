#!/usr/bin/env bash
# CI check: `make demo` sets itself up as a normal (non-root) user with Python >= 3.11 and npm
# only. As root, makes a user, gives it a fresh clone of this checkout's HEAD, and as that user
# runs scripts/install.sh --demo into a fresh virtual environment and builds the demo over a tiny
# region (soundscape demo --no-serve).
#
#   sudo scripts/check_demo_install.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USER_NAME="${DEMO_USER:-soundscape-demo}"
BBOX="${DEMO_BBOX:--100,35,-99,36}"
say() { printf '[demo-install] %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  say "run as root: it creates the user it checks with"
  exit 2
fi
id -u "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_NAME"
home="$(getent passwd "$USER_NAME" | cut -d: -f6)"
work="$home/soundscape-map"
rm -rf "$work" "$home/demo-cache"
git clone --quiet "$ROOT" "$work"
chown -R "$USER_NAME:$USER_NAME" "$work"

t0=$(date +%s)
runuser -u "$USER_NAME" -- env HOME="$home" bash -c "
  set -euo pipefail
  cd '$work'
  test \"\$(id -u)\" != 0
  scripts/install.sh --demo
  .venv/bin/soundscape demo --no-serve --no-progress --cache-dir '$home/demo-cache' --bbox='$BBOX'
" | tee "$home/demo-install.log"
grep -q "demo ready" "$home/demo-install.log"
if [ -d "$work/.venv/lib" ] && find "$work/.venv/lib" -maxdepth 3 -name "pytest" | grep -q .; then
  say "the demo install pulled the test tools (pytest): it should be runtime only"
  exit 1
fi
say "a normal user installed and built the demo in $(( $(date +%s) - t0 )) s"
