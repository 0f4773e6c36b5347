# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := src/incremental/examples/app_builder# the demo's recordings (package data; replay --demo plays them)

.PHONY: demo serve test lint typecheck unit browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: the recorded 8-tool app-builder conversation, replayed at its recorded speed through
# a private redis-server and real arq workers; every tool a 3 s simulated job, so the overlap shows.
demo: $(STAMP)
	$(BIN)/incremental inspect $(DEMO)/app_builder_8_tools.sse
	$(BIN)/incremental replay --demo --simulate 3

# The live service and its page, on the same recording: open the address it prints (token included).
serve: $(STAMP)
	$(BIN)/incremental serve --demo --simulate 3

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts workers
	$(BIN)/ruff format --check src tests scripts workers

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) browser
	$(BIN)/pytest -q

# Debian's chromium for the browser test: apt when root or with passwordless sudo, else one line on how.
browser:
	@scripts/ensure_chromium.sh

bench: $(STAMP)
	$(BIN)/python scripts/bench_parser.py
	$(BIN)/python scripts/bench_dispatch.py
	$(BIN)/python scripts/bench_service.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
