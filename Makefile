# The README's commands. Everything installs itself: `make demo` and `make test` on a new machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PORT ?= 8000
SIZE ?= small
PYTEST_ARGS ?=

.PHONY: setup demo serve test lint check browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

## make demo: set up, migrate a SQLite record store under ./var, load demo data, serve on :8000
demo: setup
	$(BIN)/ichigen db upgrade
	$(BIN)/ichigen demo --size $(SIZE) --port $(PORT)
	$(BIN)/ichigen serve --port $(PORT)

serve: setup
	$(BIN)/ichigen db upgrade
	$(BIN)/ichigen serve --port $(PORT)

## make test: set up, then lint, types, import contracts, migrations check and the whole suite
test: setup browser lint
	$(BIN)/pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/ruff format --check src tests bench migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

# Debian's Chromium drives the browser tests (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

bench: setup
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
