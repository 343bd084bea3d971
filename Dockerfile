# One image for every process of the service: web (the default command), relay, consumer,
# worker, migrate and rq-dashboard; docker-compose.yml and deploy/k8s/ pick the command.

FROM python:3.11-slim-bookworm AS dependencies
# Its own layer, rebuilt only when requirements.txt changes. pip, setuptools and the packages'
# own test suites are build tools, not part of what runs: removed before the copy below.
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
    && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*/tests' -exec rm -rf {} +

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLASK_HEARTBEAT_FILE=/tmp/heartbeat
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=dependencies /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py wsgi.py ./
COPY migrations ./migrations
COPY consumer ./consumer
COPY orders_app ./orders_app
USER 10001:10001
# No EXPOSE: the ports differ by process (web 8000, rq-dashboard 9181, FLASK_METRICS_PORT);
# compose and the Kubernetes manifests name each one. The health check fits whichever process
# the container runs (the web by default), see orders_app/healthcheck.py.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "orders_app.healthcheck", "process"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
