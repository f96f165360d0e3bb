# Two commands: `make run` serves, `make test` checks. Both set up what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench clean

# The browser tests drive Debian's Chromium (Playwright's own browser download is not reachable here),
# with a CJK font so the console's pages render (and screenshot) their Chinese.
CHROMIUM := /usr/bin/chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Installed when missing (a fresh Debian machine); `make test` needs it for tests/browser.
$(CHROMIUM):
	@echo "installing Debian's chromium (and a CJK font) for the browser tests"
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium fonts-wqy-microhei

install: $(STAMP) $(CHROMIUM)

run: $(STAMP)
	$(BIN)/python -m server

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m scripts.bench_platform

clean:
	rm -rf $(VENV) var
