# Two entry points a newcomer needs: `make demo` and `make test`. Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test lint format bench demo clean

install:
	@scripts/install.sh

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

demo: install
	@echo "make demo: the demo world, trained demo model and map service land with issues 4 and 5;"
	@echo "until then, try the model library: $(VENV)/bin/soundscape train --workdir runs/try --steps 50 --batch-size 16"
	@exit 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
