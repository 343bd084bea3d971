# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
# Procfile and test subprocesses find the virtualenv's commands (gunicorn, rq, ...) first.
export PATH := $(BIN):$(PATH)

.PHONY: run test lint bench install

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# A local .env with a fresh random JWT secret and passwords; edit it to change any setting.
.env:
	$(PYTHON) -c 'import re, secrets; print(re.sub(r"^(JWT_SECRET_KEY|\w+_PASSWORD)=.*", lambda m: f"{m[1]}={secrets.token_hex(24)}", open(".env.example").read(), flags=re.M), end="")' > $@
	@echo "Wrote .env (from .env.example, with a new random JWT_SECRET_KEY and passwords)"

run: install .env
	$(BIN)/flask --app orders_app prestart
	$(BIN)/honcho start

test: install
	$(BIN)/pytest

# Also validates what cannot run here: the Dockerfile (hadolint) and the compose file
# (Debian's docker-compose: apt-get install --no-install-recommends docker-compose).
lint: install .env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	docker-compose config --quiet

# Benchmarks (not part of make test): results in bench/results/, the table in README.md.
bench: install
	$(BIN)/python bench/run.py
