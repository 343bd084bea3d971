"""Every setting of the service in one table: ``python docs/settings_table.py`` prints it.

Names and meanings come from ``.env.example``, which documents every variable; defaults come from
the code (``orders_app.config.Defaults``, then ``gunicorn.conf.py``, the ``Procfile`` and
``docker-compose.yml``), so the table cannot state a default the code does not have. The site's
Configuration page gets the table at build time (``docs/hooks.py``), and ``tests/test_docs.py``
fails when ``.env.example`` and the code disagree.
"""

import json
import re
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
from orders_app.config import PLAIN_VARIABLES, Defaults  # noqa: E402

ENV_EXAMPLE = ROOT / ".env.example"
# `NAME=value  meaning` or `NAME  meaning`, commented out or not; `A / B  meaning` for a pair.
NAME = r"[A-Z][A-Z0-9_]*(?:__[a-z_]+)?"  # FLASK_A__b sets the nested setting b of A
SETTING = re.compile(rf"^(# )?({NAME}(?: / {NAME})*)(=\S*)?(?:\s+(.*))?$")
CONTINUATION = re.compile(r"^#\s{5,}(\S.*)$")  # a meaning carried on to the next line
# Fixed by the code rather than set per deployment: no row (FLASK_<KEY> still reaches them).
INTERNAL = {
    "API_TITLE",
    "API_VERSION",
    "JWT_TOKEN_LOCATION",
    "OPENAPI_JSON_PATH",
    "OPENAPI_SWAGGER_UI_CONFIG",
    "OPENAPI_SWAGGER_UI_PATH",
    "OPENAPI_SWAGGER_UI_URL",
    "OPENAPI_URL_PREFIX",
    "OPENAPI_VERSION",
    "RATELIMIT_HEADERS_ENABLED",
    "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED",
    "RATELIMIT_KEY_PREFIX",
    "RATELIMIT_SWALLOW_ERRORS",
}
# os.environ.get("NAME", default) in gunicorn.conf.py; ${NAME:-default} or ${NAME:?} (required)
# in the Procfile and the compose file.
GUNICORN_DEFAULT = re.compile(r'os\.environ\.get\("(\w+)", "?([^")]*)"?\)')
SHELL_DEFAULT = re.compile(r"\$\{(\w+):([-?])([^}]*)\}")
NO_DEFAULT, REQUIRED = object(), object()


def env_example(path=ENV_EXAMPLE):
    """``[(variable, value or None, meaning)]`` for every variable ``.env.example`` documents."""
    rows, comment, group = [], [], ""
    for line in path.read_text().splitlines():
        continued = CONTINUATION.match(line)
        setting = SETTING.match(line)
        if not line.strip():
            comment, group = [], ""
        elif continued and rows:
            name, value, meaning = rows[-1]
            rows[-1] = (name, value, f"{meaning} {continued[1]}")
        elif setting and (setting[3] or setting[4] or not setting[1]):
            # Its own meaning, else the comment above it, else its group's (settings in a row).
            meaning = setting[4] or " ".join(comment) or group
            group = group if setting[4] else meaning
            comment = []
            for name in setting[2].split(" / "):
                rows.append((name, setting[3][1:] if setting[3] else None, meaning))
        elif line.startswith("#"):
            comment.append(line.lstrip("# "))
    return rows


def config_key(variable):
    """The ``Defaults`` key a variable sets (``FLASK_A__b`` sets ``A``), or None."""
    if variable in PLAIN_VARIABLES:
        return PLAIN_VARIABLES[variable]
    if variable.startswith("FLASK_"):
        return variable.removeprefix("FLASK_").split("__")[0]
    return None


def default(variable):
    """The code's default for ``variable``: a value, None, ``REQUIRED`` or ``NO_DEFAULT``."""
    key = config_key(variable)
    if key is not None and hasattr(Defaults, key):
        value = getattr(Defaults, key)
        for nested in variable.split("__")[1:]:
            value = value[nested]
        return value.total_seconds() if isinstance(value, timedelta) else value
    return process_defaults().get(variable, NO_DEFAULT)


def process_defaults():
    """Defaults outside the app's configuration: gunicorn's, the Procfile's and compose's."""
    found = {}
    for name, value in GUNICORN_DEFAULT.findall((ROOT / "gunicorn.conf.py").read_text()):
        found[name] = parsed(value)
    for file in ("Procfile", "docker-compose.yml"):
        for name, kind, value in SHELL_DEFAULT.findall((ROOT / file).read_text()):
            found.setdefault(name, parsed(value) if kind == "-" else REQUIRED)
    return found


def parsed(text):
    """A variable's value as the code reads it: JSON (as ``FLASK_<KEY>`` does), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def shown(value):
    """A default as written in an environment variable (JSON, as ``FLASK_<KEY>`` reads it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value)


def table():
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for variable, _, meaning in env_example():
        code = default(variable)
        if code is NO_DEFAULT:
            stated = "—"
        elif code is REQUIRED:
            stated = "required (compose)"
        elif code is None:
            stated = "none"
        else:
            stated = f"`{shown(code)}`" if shown(code) else "empty"
        meaning = meaning.replace("|", r"\|")
        lines.append(f"| `{variable}` | {stated} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
