# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install lint typecheck unit kafka chromium bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start the whole system on the embedded default (SQLite, local files, reference miners).
run: install
	$(VENV)/bin/taskledger dev --data-dir .taskledger

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy events aggregates projections audit processors http_edge miners blobs taskledger bench

## Kafka's jars from Maven Central (cached under ~/.m2 and .cache/kafka).
kafka:
	scripts/kafka-broker fetch

## Debian's Chromium for the dashboard's browser tests (Playwright drives it; no browser
## download is possible here): installed with apt-get only when it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }

## Everything: install, lint, types, and the whole suite with the real broker and emulators.
test: install lint typecheck kafka chromium
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(VENV)/bin/taskledger bench engine

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
