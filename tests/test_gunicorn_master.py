"""gunicorn's master process reads gunicorn.conf.py, and loads ``orders_app.log`` through its
logging configuration, before the gevent workers it forks patch the standard library: whatever
the master imports, every worker inherits unpatched."""

import json
import os
import subprocess
import sys

import pytest

from support.settings import ROOT

pytestmark = pytest.mark.system

# What gunicorn's master does before it forks a worker: read the configuration file and set up
# logging (``Arbiter.setup``), here without binding or serving anything.
MASTER = """
import json, sys
from gunicorn.app.wsgiapp import WSGIApplication
from gunicorn.arbiter import Arbiter

sys.argv = ["gunicorn", "-c", sys.argv[1], "wsgi:app"]
Arbiter(WSGIApplication())
print(json.dumps(sorted(sys.modules)))
"""


def master_modules(config_file, tmp_path):
    """The modules a gunicorn master has loaded once it has read ``config_file``."""
    output = subprocess.run(
        [sys.executable, "-c", MASTER, str(config_file)],
        cwd=ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(json.loads(output))


def test_the_master_loads_only_the_standard_library_dotenv_and_orjson_beyond_gunicorns_own(tmp_path):
    """No Flask, werkzeug or any other library that would hold the unpatched socket, ssl or
    threading of every worker."""
    gunicorns_own = tmp_path / "gevent.conf.py"
    gunicorns_own.write_text('worker_class = "gevent"\n')
    ours = master_modules(os.path.join(ROOT, "gunicorn.conf.py"), tmp_path)
    added = ours - master_modules(gunicorns_own, tmp_path)
    packages = {name.partition(".")[0] for name in added} - set(sys.stdlib_module_names)
    assert sorted(packages) == ["dotenv", "orders_app", "orjson"]
