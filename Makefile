# Two entry points a newcomer needs: `make demo` and `make test`. Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install install-demo test lint format bench demo demo-model clean

# The test stack: Debian packages (redis-server, chromium; as root), dev/s3/dask extras, npm.
install:
	@scripts/install.sh

# What the demo needs, as a normal user: Python >= 3.11 and npm.
install-demo:
	@scripts/install.sh --demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) scripts/bench_model.py
	$(PY) scripts/bench_train.py

# Builds what is missing (world files, store over the USA; the model ships in
# embeddings_store/demo/weights/)
# into $(SOUNDSCAPE_DEMO_CACHE) or ~/.cache/soundscape-map, then serves the map.
demo: install-demo
	$(VENV)/bin/soundscape demo $(DEMO_ARGS)

# Retrains the shipped demo model from scratch (one command, ~20 min on 2 cores), evaluates it
# and copies it into the package.
DEMO_TRAIN_DIR ?= runs/demo-model
demo-model: install
	$(VENV)/bin/soundscape demo --retrain --evaluate --no-serve --cache-dir $(DEMO_TRAIN_DIR)
	cp $(DEMO_TRAIN_DIR)/demo-model.safetensors embeddings_store/demo/weights/demo.safetensors
	cp $(DEMO_TRAIN_DIR)/evaluation.md embeddings_store/demo/weights/demo-evaluation.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
