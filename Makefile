# Two commands on a fresh machine:  `make demo` (the whole pipeline end to end on the embedded
# defaults) and `make test` (the default test suite). Both create .venv first if needed.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OPENCV := opencv-python-headless==5.0.0.93

.PHONY: install test test-unit test-integration test-all lint demo bench clean

$(BIN)/lcmftn: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to the CPU wheel in pyproject.toml (a plain `torch` pulls GBs of CUDA).
	$(BIN)/pip install --quiet -e '.[cluster,test]'
	# NOTE: scenedetect depends on opencv-python (GUI build); both wheels write the same cv2/
	# package. Keep exactly one OpenCV: the headless build.
	$(BIN)/pip uninstall --quiet -y opencv-python
	$(BIN)/pip install --quiet --force-reinstall --no-deps $(OPENCV)
	touch $@

install: $(BIN)/lcmftn

test: install
	$(BIN)/pytest -m "not slow and not gpu" -p no:cacheprovider

test-unit: install
	$(BIN)/pytest tests/unit -m "not slow and not gpu"

test-integration: install
	$(BIN)/pytest tests/integration -m "not slow and not gpu"

test-all: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check lcmftn workflows infra tests

demo: install
	$(BIN)/python -m workflows.demo --out demo-out

bench: install
	$(BIN)/python -m workflows.benchmark model --quick --timer cpu
	$(BIN)/python -m workflows.benchmark ingest --film-size 720
	$(BIN)/python -m workflows.benchmark train --recipe cpu-small --steps 15
	$(BIN)/python -m workflows.benchmark colorize lockstep --size 64 --full-size 240 --model-size tiny --batch-size 1 4 8

clean:
	rm -rf demo-out .pytest_cache
