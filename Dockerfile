# syntax=docker/dockerfile:1
# The soundscape map service: one image for `soundscape serve`, `soundscape precompute` and
# `soundscape demo`.
#
#   docker build -t soundscape-map .                                  # CPU (default)
#   docker build --build-arg VARIANT=cuda -t soundscape-map:cuda .    # NVIDIA GPU + faiss-gpu
#   docker run --rm -p 8000:8000 -v soundscape-data:/data soundscape-map
#   docker run --rm --gpus all ... soundscape-map:cuda                # needs the NVIDIA toolkit
#
# Both variants use the same Debian Python base: the CUDA runtime libraries arrive as pip wheels
# with torch and faiss-gpu, and the driver comes from the host (NVIDIA container toolkit), so no
# CUDA base image is needed and both variants run the same Python.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# build: the virtual environment and the web page's npm packages, made by the same
# scripts/install.sh that developers and CI run.
FROM ${PYTHON_IMAGE} AS build
# cpu or cuda
ARG VARIANT=cpu
# The CPU wheel index install.sh takes torch from for the cpu variant (PyPI's Linux torch wheel
# is the CUDA build: GBs of NVIDIA libraries a CPU image does not need); the constraint
# torch==2.13.0 matches its 2.13.0+cpu. The cuda variant takes torch from PyPI.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# nodejs/npm: install.sh runs `npm ci` in web/ (Leaflet is served by us, never from a CDN).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
# For cuda: faiss-cpu (a main dependency) and faiss-gpu (the gpu extra) both install the `faiss`
# module into the same folder, so faiss-cpu is removed and faiss-gpu's files laid down again.
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    case "$VARIANT" in \
      cpu)  extras="s3,dask" ;; \
      cuda) extras="gpu,s3,dask" ;; \
      *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 1 ;; \
    esac; \
    TORCH="$VARIANT" TORCH_INDEX_URL="$TORCH_INDEX_URL" VENV=/opt/venv EXTRAS="$extras" \
      scripts/install.sh --demo; \
    if [ "$VARIANT" = cuda ]; then \
      /opt/venv/bin/pip uninstall -y faiss-cpu; \
      /opt/venv/bin/pip install --no-deps --force-reinstall -c constraints.txt faiss-gpu; \
    fi; \
    /opt/venv/bin/python -c "import faiss, torch, zarr, s3fs, server.cli"

# ---------------------------------------------------------------------------------------------
# runtime: the environment and the source tree (install.sh installs the project editable, so the
# venv points at /app), no compilers, npm or build caches. The wheels bundle GDAL, libsndfile and
# OpenBLAS, so no Debian packages are needed at run time.
FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="soundscape-map" \
      org.opencontainers.image.description="PSM soundscape mapping tile service (${VARIANT})"

RUN groupadd --system --gid 10001 soundscape \
 && useradd --system --uid 10001 --gid soundscape --create-home --home-dir /home/soundscape \
      --shell /usr/sbin/nologin soundscape \
 && mkdir -p /data/demo /data/stores \
 && chown -R soundscape:soundscape /data

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app

# HF_HUB_OFFLINE: the only pretrained weights used ship inside wheels; never reach for a hub.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    SOUNDSCAPE_DEMO_CACHE=/data/demo

WORKDIR /app
# The code stays root-owned and read-only to the service; it writes only under /data and $HOME.
USER soundscape
VOLUME ["/data"]
EXPOSE 8000

# Liveness through the service's own /healthz, with the standard library (no curl in the image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

CMD ["soundscape", "serve", "--host", "0.0.0.0", "--port", "8000"]
