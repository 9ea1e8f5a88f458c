# Mailyard: `make run` starts the server on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-postgres lint typecheck bench clean

# The end-to-end suites (SMTP in, IMAP, JMAP, search) again with the MailStore and the
# SearchIndex on PostgreSQL: a fresh database per server (tests/e2e/server.py).
PG_E2E := tests/e2e/test_smtp_inbound.py tests/e2e/test_imap.py tests/e2e/test_jmap_mail.py \
          tests/e2e/test_search.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/mailyard serve $(ARGS)

test: install
	scripts/test-deps.sh
	$(BIN)/ruff check mailyard tests bench
	$(BIN)/mypy
	scripts/test-run.sh $(PYTEST_ARGS)

test-postgres: install
	MAILYARD_TEST_STORE=postgres $(BIN)/python -m pytest -q -n $${TEST_WORKERS:-3} \
		--dist loadfile $(PG_E2E) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check mailyard tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/smtp_ingest.py

clean:
	rm -rf $(VENV) mailyard-data .pytest_cache .mypy_cache
