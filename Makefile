# Thin targets over the duet CLI and pytest. Everything installs into ./.venv from PyPI by package name.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := serve,local,cpu,build,dev,loadtest
STAMP := $(VENV)/.installed

.PHONY: up test models bench chart lint clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing duet[$(EXTRAS)] (first run: a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# torch first and pinned, so nothing pulls a multi-GB CUDA build; it is only used to build models.
	$(BIN)/pip install --quiet --progress-bar on torch==2.13.0
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

models: $(STAMP)
	$(BIN)/duet models build

up: models
	$(BIN)/duet up

test: models
	$(BIN)/pytest -q

bench: models
	$(BIN)/duet bench --markdown docs/benchmarks.md

chart: $(STAMP)
	$(BIN)/pytest -q tests/chart

lint: $(STAMP)
	$(BIN)/ruff check duet transformers_pre predictors loadtests tests

clean:
	rm -rf .duet
