# Thin targets over the duet CLI and pytest. Everything installs into ./.venv from PyPI by package name.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := serve,local,cpu,build,dev,loadtest,gateway
STAMP := $(VENV)/.installed

.PHONY: up test test-fast models bench loadtest chart lint clean

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

up: $(STAMP)
	$(BIN)/duet up --build

test: models
	$(BIN)/pytest -q

# The unit tests without the slow ones: the tier to run while developing (no model build needed; tests that need a
# built model skip). `make test` runs everything, as CI does.
test-fast: $(STAMP)
	$(BIN)/pytest -q tests/unit -m "not slow"

bench: models
	$(BIN)/duet bench --markdown docs/benchmarks.md

# A short headless locust run against a running stack (`make up` in another shell, or HOST=https://... for a
# cluster); CSV and HTML reports under .duet/loadtest/. USER_CLASS=MammographyUser for studies, SHAPE=step|spike|soak
# for a load shape (it overrides USERS and DURATION); HOST_HEADER='{model}.duet.example.org' for a KServe ingress
# that routes by Host (docs/loadtesting.md). Exit code 1 when a threshold in the locustfile is breached.
HOST ?= http://127.0.0.1:8080
USERS ?= 16
DURATION ?= 30s
USER_CLASS ?= SentimentUser
SHAPE ?=
HOST_HEADER ?=
loadtest: $(STAMP)
	@mkdir -p .duet/loadtest
	DUET_SHAPE=$(SHAPE) DUET_HOST_HEADER='$(HOST_HEADER)' PYTHONPATH=. $(BIN)/locust -f loadtests/locustfile.py --headless --host $(HOST) \
		-u $(USERS) -r $(USERS) -t $(DURATION) --only-summary \
		--csv .duet/loadtest/$(USER_CLASS) --html .duet/loadtest/$(USER_CLASS).html $(USER_CLASS)

chart: $(STAMP)
	$(BIN)/pytest -q tests/chart

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf .duet

# A 10-minute steady load (locust's soak shape) on a fresh local stack; fails on any error or >10% memory growth.
.PHONY: soak
soak: models
	$(BIN)/python -m duet.local.soak --seconds $${DUET_SOAK_SECONDS:-600} --users $${DUET_SOAK_USERS:-16}
