# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
# Procfile and test subprocesses find the virtualenv's commands (gunicorn, rq, ...) first.
export PATH := $(BIN):$(PATH)

.PHONY: run test test-fast lint bench install lock docs compose-test

install: $(VENV)/.installed

# requirements-dev.txt locks the runtime's packages and the tools, each with its hashes: pip
# checks every file it downloads against them. A changed lock reinstalls.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Regenerates the locks from requirements.in and requirements-dev.in (edit those): what is
# already locked keeps its version, what is new gets the latest; for any Python 3.11, any OS.
# To upgrade one package: make lock LOCK_ARGS="--upgrade-package flask".
LOCK_ARGS ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command "make lock" $(LOCK_ARGS)
lock: install
	$(UV_COMPILE) --output-file requirements.txt requirements.in
	$(UV_COMPILE) --output-file requirements-dev.txt requirements-dev.in

# A local .env with a fresh random JWT secret and passwords; edit it to change any setting.
# Readable by its owner only (0600), whatever the umask.
.env:
	umask 077 && $(PYTHON) -c 'import re, secrets; print(re.sub(r"^(JWT_SECRET_KEY|\w+_PASSWORD)=.*", lambda m: f"{m[1]}={secrets.token_hex(24)}", open(".env.example").read(), flags=re.M), end="")' > $@
	@echo "Wrote .env (from .env.example, with a new random JWT_SECRET_KEY and passwords)"

# The real environment wins over .env: `dotenv run --no-override` fills in only what is unset.
WITH_DOTENV := $(BIN)/dotenv --file .env run --no-override

# The Procfile's processes, each line prefixed with its name (orders_app/procfile_runner.py).
run: install .env
	$(WITH_DOTENV) $(BIN)/flask --app orders_app prestart
	$(WITH_DOTENV) $(BIN)/python -m orders_app.procfile_runner

# Branch coverage of orders_app, consumer, gunicorn.conf.py and wsgi.py, the processes the tests
# start included (pyproject.toml); below COVERAGE_MIN percent the run fails (the suite reaches 99 %;
# the margin absorbs branches that only timing decides, such as a retry that is not always needed).
COVERAGE_MIN ?= 98
test: install
	$(BIN)/pytest -m "not compose" --cov --cov-branch \
		--cov-report=term-missing:skip-covered --cov-fail-under=$(COVERAGE_MIN)

# The edit-test loop: every test that starts no process or server of its own (about 2.5 minutes
# here; no coverage floor, since the processes' code is left out).
test-fast: install
	$(BIN)/pytest -m "not system" -q

# Also validates what cannot run here: the Dockerfile (hadolint), the compose file and its proxy
# (Debian's docker-compose and nginx: apt-get install --no-install-recommends docker-compose nginx),
# the Kubernetes manifests as kustomize renders them, against the schemas of Kubernetes 1.37, and
# the Prometheus configuration and alert rules (promtool, from Debian's prometheus package).
lint: install .env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy  # orders_app and consumer, strict ([tool.mypy] in pyproject.toml)
	$(BIN)/hadolint Dockerfile
	docker-compose config --quiet
	nginx -t -q -c $(abspath deploy/nginx/nginx.conf)
	$(BIN)/kubectl kustomize deploy/k8s > /dev/null  # fails here if it cannot render (a pipe would hide it)
	$(BIN)/kubectl kustomize deploy/k8s | $(BIN)/kubernetes-validate --strict --quiet -k 1.37.0 -
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/alerts.yml
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet  # the docs site: broken links, pages not in nav

# The documentation site (docs/, mkdocs.yml) on http://127.0.0.1:8001, rebuilt on every change. Its
# first build takes Mermaid from the npm registry (`npm`; kept in .cache/npm/ after that).
DOCS_ADDRESS ?= 127.0.0.1:8001
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr $(DOCS_ADDRESS)

# Benchmarks (not part of make test; about 14 minutes): results in bench/results/, the tables in
# docs/performance.md. `make bench BENCH_WRK_SECONDS=1 BENCH_ROUNDS=1` checks the harness quickly (numbers of no use).
bench: install
	$(BIN)/python bench/run.py

# The compose stack for real (tests/test_compose_stack.py; not part of `make test`): builds the
# image, brings the stack up under a project name and host ports of its own, uses, scales, stops
# and restarts it, then `down -v`. Needs Docker and docker-compose (docs/deployment.md).
compose-test: install
	COMPOSE_TEST=1 $(BIN)/pytest -m compose tests/test_compose_stack.py -v -s
