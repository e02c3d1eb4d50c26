# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit bench clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The key service on ./.qrc over PQ TLS (prints the URL and where the admin token is).
run: $(STAMP)
	$(BIN)/qrc serve --dev --data-dir .qrc

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r src
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_import_cycles.py

# Debian packages the tests use: SoftHSM2 (the PKCS#11 token of the HSM-custody tests) and
# age (the independent implementation the age-format tests check against).
SYSTEM_PACKAGES := /usr/lib/softhsm/libsofthsm2.so:softhsm2 /usr/bin/age:age /usr/bin/chromium:chromium /usr/bin/certutil:libnss3-tools
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

unit: $(STAMP) system-deps
	$(BIN)/python -m pytest -n 2 -q

test: lint unit

bench: $(STAMP)
	$(BIN)/qrc bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
