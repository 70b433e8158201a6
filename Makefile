# One command to set up, one to test. See README.md.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Where `make model` looks for a local mirror of the weights before downloading.
MODEL_MIRROR ?= ../shared/models

.PHONY: install model demo test lint typecheck pytest bench peer-deps clean

install: $(BIN)/lobbywatch model

$(BIN)/lobbywatch: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Fetch (or copy from the mirror) and checksum-verify every catalogue model
# (bytetrack_nano, the default, and yolox_nano) into the git-ignored
# models/weights/ folder.
model: $(BIN)/lobbywatch
	@if [ -d "$(MODEL_MIRROR)" ]; then \
	  $(BIN)/lobbywatch model pull --from "$(MODEL_MIRROR)" --dest models/weights; \
	else \
	  $(BIN)/lobbywatch model pull --dest models/weights; \
	fi

# The main job: the whole system on this machine (broker, collector, simulated
# fleet, one real edge pipeline on the sample video), with a live terminal view.
demo: install
	$(BIN)/lobbywatch demo

test: lint typecheck pytest

lint: $(BIN)/lobbywatch
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || (echo "run: $(BIN)/ruff format ." && false)

# mypy cannot follow setuptools' package-dir mapping, so it checks a
# throw-away tree of symlinks laid out as the installed package.
typecheck: $(BIN)/lobbywatch
	rm -rf build/typecheck && mkdir -p build/typecheck/lobbywatch
	for f in lobbywatch/*; do ln -s "$(CURDIR)/$$f" build/typecheck/lobbywatch/; done
	ln -s "$(CURDIR)/edge" build/typecheck/lobbywatch/edge
	ln -s "$(CURDIR)/server" build/typecheck/lobbywatch/server
	ln -s "$(CURDIR)/demo" build/typecheck/lobbywatch/demo
	ln -s "$(CURDIR)/models" build/typecheck/lobbywatch/models
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p lobbywatch

pytest: $(BIN)/lobbywatch
	$(BIN)/pytest -q -ra

bench: $(BIN)/lobbywatch
	$(BIN)/python bench/edge_pipeline.py
	$(BIN)/python bench/count_replay.py
	$(BIN)/python bench/edge_agent.py
	$(BIN)/python bench/alert_quality.py
	$(BIN)/python bench/collector_throughput.py
	$(BIN)/python bench/board_refresh.py --branches 5000 --skip-old

# Pinned peer libraries for bench/peer_pipeline.py, without the GUI OpenCV
# they declare (see pyproject.toml, [project.optional-dependencies] peer).
peer-deps: $(BIN)/lobbywatch
	$(BIN)/pip install -q --no-deps supervision==0.31.2 trackers==2.6.1
	$(BIN)/pip install -q 'scipy>=1.11' 'pydeprecate>=0.9,<0.14' defusedxml pillow requests tqdm

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
