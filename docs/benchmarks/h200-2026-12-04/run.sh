#!/bin/bash
# One device run: GPU figures for issue 24 (bench_scale on a 1M-cell D=512 store, bench_model's
# paper widths, the paper image tower's real precompute). Results go to $OUT as they finish.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
PY=${PY:-python3}; CELLS=${CELLS:-1000000}; W=${W:-/tmp/w1m}
if [ -z "${DRY:-}" ]; then  # DRY=1 PY=.venv/bin/python: a local rehearsal
  mkdir -p /tmp/site /tmp/xdg/soundscape-map
  tar -xJf .devrun/site.tar.xz -C /tmp/site || exit 3
  xz -dc .devrun/places-v1-3.0.2-1.5.1.npz.xz > /tmp/xdg/soundscape-map/places-v1-3.0.2-1.5.1.npz
  export PYTHONPATH=/tmp/site XDG_CACHE_HOME=/tmp/xdg
fi
el "unpacked"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee $OUT/gpu.txt
$PY -c "import torch,zarr,rasterio,fastapi,pyproj,numcodecs,os;print('torch',torch.__version__,'cuda',torch.version.cuda,'zarr',zarr.__version__,'rasterio',rasterio.__version__,'cpus',os.cpu_count())" | tee -a $OUT/gpu.txt
el "world store"
timeout ${MK_S:-150} $PY scripts/make_world_store.py --cells $CELLS --out $W.zarr \
  --random-model paper-offline > $OUT/make_world.txt 2>&1; el "make_world rc=$?"; tail -2 $OUT/make_world.txt
timeout ${SCALE_S:-230} $PY scripts/bench_scale.py --store $W.zarr \
  --checkpoint $W-model.safetensors --view-zoom 10 --json $OUT/scale_cuda_1m.json \
  > $OUT/scale_cuda_1m.txt 2>&1; el "bench_scale rc=$?"; tail -12 $OUT/scale_cuda_1m.txt
[ -n "${SKIP_MODEL:-}" ] || timeout ${MODEL_S:-100} $PY scripts/bench_model.py --device ${DEVICE:-cuda} --configs paper \
  --json $OUT/model_cuda.json > $OUT/model_cuda.txt 2>&1; el "bench_model rc=$?"; tail -25 $OUT/model_cuda.txt
[ -n "${SKIP_MODEL:-}" ] || timeout ${STORE_S:-60} $PY scripts/bench_store.py --quick --imagery .devrun/bm-crop.tif \
  --json $OUT/store_cuda.json > $OUT/store_cuda.txt 2>&1; el "bench_store rc=$?"; tail -12 $OUT/store_cuda.txt
el "done"
