# Mailyard: `make run` starts the server on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-postgres lint typecheck bench clean cluster cluster-down

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

# Only the second stage of `make test`: the end-to-end suites with the MailStore and the
# SearchIndex on PostgreSQL and the blobs on S3 (the file list: PG_S3_E2E in scripts/test-run.sh).
test-postgres: install
	TEST_STAGES=postgres-s3 scripts/test-run.sh $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check mailyard tests bench
	$(BIN)/mypy

# Three nodes on loopback over NATS JetStream, PostgreSQL shards, Redis and S3 (issue 21);
# prints the ports. BLOBS=fs shares a directory instead of starting Ceph.
cluster: install
	scripts/cluster-up.sh

cluster-down:
	scripts/cluster-down.sh

bench: install
	$(BIN)/python bench/smtp_ingest.py

clean:
	rm -rf $(VENV) .venv-sslyze mailyard-data .pytest_cache .mypy_cache
