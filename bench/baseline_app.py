"""The ceiling of this web stack on this machine: a ten-line Flask app, served by the same
gunicorn configuration as the service (gunicorn.conf.py: gevent, one worker per core)."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def status():
    return {"status": "ok"}
