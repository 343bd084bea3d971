"""MkDocs hooks: what the site gets at build time rather than from a copy kept by hand.

- ``openapi.json``: the app's own ``/openapi.json``, rendered on ``openapi.md`` (``openapi.js``)
  with the Swagger UI files the app itself serves (``swagger_ui_bundle``);
- the settings table of ``configuration.md`` (``docs/settings_table.py``);
- Mermaid and the offline plugin's iframe-worker, which Material would load from a CDN: taken once
  from the npm registry by ``npm pack``, checked against the integrity pinned here, kept in
  ``.cache/npm/``.
"""

import base64
import hashlib
import json
import secrets
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from mkdocs.structure.files import File
from swagger_ui_bundle import swagger_ui_path

sys.path.insert(0, str(Path(__file__).parent))
from settings_table import table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_MARKER = "<!-- settings-table -->"
# Scripts Material would load from a CDN, taken from the npm registry instead: the site's path of
# each, and its package, version, the tarball's integrity (as npm prints it) and the file in it.
NPM_FILES = {
    # Material 9.8 renders diagrams with Mermaid 11, and uses this one (mkdocs.yml, extra_javascript).
    "assets/javascripts/mermaid.min.js": (
        "mermaid",
        "11.17.2",
        "sha512-V6K3C8EBdEsPFZXSKMJe6ppQOENxuHARr9GvHX4hh47lAbhMRD9qf4oEK7LoaRQxULMa80/qt5gHO73aCleBBg==",
        "package/dist/mermaid.min.js",
    ),
    # The offline plugin's search from the file system (mkdocs.yml, extra.polyfills).
    "assets/javascripts/iframe-worker-shim.js": (
        "iframe-worker",
        "1.0.4",
        "sha512-roeaaI+Lg1LJNfgpCjoRe/+WzEjy9+Z08LoEvu85MCPbBjwm+qXz8Ag5U05lHa6V1CysZyGzE0SOkAtSUA5q7Q==",
        "package/shim/index.js",
    ),
}


def on_files(files, config):
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        files.append(
            File.generated(config, f"assets/swagger-ui/{name}", abs_src_path=f"{swagger_ui_path}/{name}")
        )
    document = openapi_document()
    files.append(File.generated(config, "openapi.json", content=document))
    # The document inline, not fetched: a page opened from the file system may not fetch files.
    render = f"SwaggerUIBundle({{dom_id: '#swagger-ui', spec: {document}, supportedSubmitMethods: []}});"
    files.append(File.generated(config, "assets/javascripts/openapi.js", content=render))
    for path, package in NPM_FILES.items():
        files.append(File.generated(config, path, abs_src_path=str(npm_file(*package))))
    return files


def on_page_markdown(markdown, page, config, files):
    return markdown.replace(SETTINGS_MARKER, table())


def openapi_document():
    """The app's ``/openapi.json``: what flask-smorest answers there (the tests compare the two)."""
    from orders_app import create_app
    from orders_app.extensions import api

    # The document does not depend on secrets or servers: any valid secret builds the app.
    app = create_app({"JWT_SECRET_KEY": secrets.token_urlsafe(48), "DEBUG": True})
    with app.app_context():
        return json.dumps(api.spec.to_dict(), indent=2, sort_keys=True)


def npm_file(package, version, integrity, member):
    """A file of an npm package, fetched once with ``npm pack`` and checked against its integrity."""
    cached = ROOT / ".cache" / "npm" / f"{package}-{version}" / member
    if not cached.exists():
        with tempfile.TemporaryDirectory() as directory:
            subprocess.run(
                ["npm", "pack", f"{package}@{version}", "--pack-destination", directory, "--silent"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            tarball = Path(directory, f"{package}-{version}.tgz")
            digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
            if f"sha512-{digest}" != integrity:
                raise RuntimeError(f"{tarball.name} does not match its pinned integrity {integrity}")
            with tarfile.open(tarball) as archive:
                content = archive.extractfile(member).read()
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")  # a build stopped midway leaves no half file
        partial.write_bytes(content)
        partial.replace(cached)
    return cached
