# One image for every process of the service: web (the default command), relay, consumer,
# worker, migrate and rq-dashboard; docker-compose.yml picks the command.

FROM python:3.11-slim-bookworm AS dependencies
# Its own layer, rebuilt only when requirements.txt changes.
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=dependencies /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py wsgi.py ./
COPY migrations ./migrations
COPY consumer ./consumer
COPY orders_app ./orders_app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "orders_app.healthcheck", "url", "http://127.0.0.1:8000/health"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
