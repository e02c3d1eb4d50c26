# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit bench clean system-deps web web-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The key service on ./.qrc over PQ TLS (prints the dashboard URL and where the admin token
# is), with the dashboard built first when Node is there.
run: $(STAMP) web
	$(BIN)/qrc serve --dev --data-dir .qrc

# The dashboard (web/: React + TypeScript, Vite) built into src/qrc/api/web_dist, which the
# service serves at /. Node 20 with npm; without it the service runs without the dashboard.
NO_NPM := echo "npm is missing: install Node 20 (Debian: apt-get install nodejs npm) to build and test the dashboard; the API and its docs work without it"
WEB_STAMP := web/node_modules/.qrc-npm-ci
# npm ci (from the lock file) when node_modules is missing or older than the lock file.
NPM_CI := if [ ! -e $(WEB_STAMP) ] || [ web/package-lock.json -nt $(WEB_STAMP) ]; then \
	  echo "cd web && npm ci"; (cd web && npm ci --no-audit --no-fund) && touch $(WEB_STAMP); fi

web:
	@if command -v npm >/dev/null; then $(NPM_CI) && cd web && npm run build; else $(NO_NPM); fi

# The dashboard's component tests (Vitest and Testing Library in jsdom).
web-test:
	@if command -v npm >/dev/null; then $(NPM_CI) && cd web && npx vitest run; else $(NO_NPM); fi

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r src
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_import_cycles.py

# Debian packages the tests use: SoftHSM2 (the PKCS#11 token of the HSM-custody tests),
# age (the independent implementation the age-format tests check against), Chromium and
# NSS's certutil (the browser tests).
SYSTEM_PACKAGES := /usr/lib/softhsm/libsofthsm2.so:softhsm2 /usr/bin/age:age /usr/bin/chromium:chromium /usr/bin/certutil:libnss3-tools
# Node and npm build the dashboard (make web) and run its component tests.
SYSTEM_PACKAGES += /usr/bin/node:nodejs /usr/bin/npm:npm
system-deps:
	@for pair in $(SYSTEM_PACKAGES); do \
	  file=$${pair%%:*}; package=$${pair##*:}; \
	  if [ ! -e "$$file" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      (apt-get install -y "$$package" >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y "$$package" >/dev/null)); \
	    else \
	      echo "$$package is missing: install the Debian package (the tests that need it skip without it)"; \
	    fi; \
	  fi; \
	done

# The browser tests (tests/browser) need the dashboard built.
unit: $(STAMP) system-deps web
	$(BIN)/python -m pytest -n 2 -q

test: lint web-test unit

bench: $(STAMP)
	$(BIN)/qrc bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
