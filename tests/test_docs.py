"""The documentation site: built strictly, its generated pages checked against the code, and read
offline in headless Chromium with its diagrams rendered.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
the build needs ``npm`` the first time (docs/hooks.py keeps Mermaid in ``.cache/npm/``).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orders_app.config import Defaults

from support.browser import CHROMEDRIVER, CHROMIUM, headless_chromium
from support.settings import make_app

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import settings_table  # noqa: E402

# Settings the app reads that are not in Defaults: Flask's and its extensions' own.
EXTENSION_SETTINGS = {
    "DEBUG",
    "JWT_PRIVATE_KEY",
    "JWT_PUBLIC_KEY",
    "RATELIMIT_IN_MEMORY_FALLBACK",
    "RATELIMIT_STORAGE_URI",
}
# Pages with diagrams, and how many each has.
DIAGRAMS = {"index.html": 1, "architecture.html": 1, "pipeline.html": 2, "api.html": 1}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as `make lint` builds it: strictly, so a broken link or anchor fails here too."""
    site_dir = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site_dir],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    return site_dir


@pytest.mark.system
def test_the_openapi_page_renders_the_apps_own_document(site):
    document = make_app().test_client().get("/openapi.json").json
    assert json.loads((site / "openapi.json").read_text()) == document
    assert (
        json.dumps(document, indent=2, sort_keys=True) in (site / "assets/javascripts/openapi.js").read_text()
    )


def test_env_example_documents_every_setting_of_the_code():
    documented = {settings_table.config_key(name) for name, _, _ in settings_table.env_example()}
    settings = {key for key in dir(Defaults) if key.isupper()} - settings_table.INTERNAL
    assert settings - documented == set(), "settings missing from .env.example"


def test_env_example_names_only_settings_that_exist():
    known = {key for key in dir(Defaults) if key.isupper()} | EXTENSION_SETTINGS
    named = {settings_table.config_key(name) for name, _, _ in settings_table.env_example()}
    assert named - known - {None} == set(), "FLASK_ settings in .env.example that the app does not have"


def test_env_example_states_the_codes_defaults():
    """An example value other than the default must say what the default is."""
    for name, value, meaning in settings_table.env_example():
        assert meaning, f"{name} has no meaning in .env.example"
        default = settings_table.default(name)
        if value is None or default in (None, settings_table.NO_DEFAULT, settings_table.REQUIRED):
            continue
        if settings_table.parsed(value) != default:
            assert f"default {settings_table.shown(default)}" in meaning, (name, value, default)


@pytest.mark.system
def test_the_configuration_page_has_every_setting_with_the_codes_default(site):
    page = (site / "configuration.html").read_text()
    rows = settings_table.env_example()
    assert len(rows) > 50
    for name, _, _ in rows:
        default = settings_table.default(name)
        if default not in (None, settings_table.NO_DEFAULT, settings_table.REQUIRED):
            cell = settings_table.shown(default) or "empty"
            assert re.search(rf"<code>{name}</code></td>\s*<td>(<code>)?{re.escape(cell)}", page), name


def test_the_module_map_matches_the_tree():
    page = (ROOT / "docs/architecture.md").read_text()
    module_map = page.split("## Module map", 1)[1]
    named = set(re.findall(r"[\w.]+\.py\b", module_map))
    tree = {path.name for package in ("orders_app", "consumer") for path in (ROOT / package).rglob("*.py")}
    assert tree - named == set(), "modules missing from the map"
    everywhere = {path.name for path in ROOT.rglob("*.py") if ".venv" not in path.parts}
    assert named - everywhere == set(), "the map names files that are gone"


@pytest.mark.system
def test_the_site_loads_nothing_from_elsewhere(site):
    for page in site.rglob("*.html"):
        for url in re.findall(r'<(?:script|img|iframe)[^>]* src="([^"]+)"', page.read_text()):
            assert not re.match(r"(https?:)?//", url), (page.name, url)
        for url in re.findall(r'<link[^>]* href="([^"]+)"', page.read_text()):
            assert not re.match(r"(https?:)?//", url), (page.name, url)


@pytest.fixture
def offline_browser():
    """Headless Chromium with the network off: every request it makes is logged."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Chromium: apt-get install chromium chromium-driver (.ci/run does)")
    driver = headless_chromium(
        "--allow-file-access-from-files", window="1280,2400", logs=("browser", "performance")
    )
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    yield driver
    driver.quit()


def svgs_in_shadow_roots(node):
    """The SVG elements inside shadow roots (Material renders each diagram into a closed one)."""
    found = []
    for root in node.get("shadowRoots", []):
        found += [n for n in walk(root) if n.get("localName") == "svg"]
    for child in node.get("children", []) + ([node["contentDocument"]] if "contentDocument" in node else []):
        found += svgs_in_shadow_roots(child)
    return found


def walk(node):
    yield node
    for child in node.get("children", []) + node.get("shadowRoots", []):
        yield from walk(child)


@pytest.mark.system
def test_the_site_works_offline_with_its_diagrams_rendered(site, offline_browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = offline_browser
    for page, count in DIAGRAMS.items():
        browser.get((site / page).as_uri())
        # Material swaps each <pre class="mermaid"> for a <div class="mermaid"> once Mermaid drew it.
        WebDriverWait(browser, 30).until(
            lambda b, count=count: (
                len(b.find_elements(By.CSS_SELECTOR, "div.mermaid")) == count
                and not b.find_elements(By.CSS_SELECTOR, "pre.mermaid")
            )
        )
        tree = browser.execute_cdp_cmd("DOM.getDocument", {"depth": -1, "pierce": True})["root"]
        svgs = svgs_in_shadow_roots(tree)
        assert len(svgs) >= count, page
        for diagram in browser.find_elements(By.CSS_SELECTOR, "div.mermaid"):
            assert diagram.size["height"] > 40, page
        browser.save_screenshot(str(tmp_path / page.replace(".html", ".png")))
        print(f"screenshot: {tmp_path / page.replace('.html', '.png')}")

    browser.get((site / "openapi.html").as_uri())
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock"))
    assert browser.find_elements(By.CSS_SELECTOR, "[id^=operations-orders-post_orders]")

    requested = [
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in browser.get_log("performance")
        if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"
    ]
    assert requested and all(url.startswith(("file:", "data:", "blob:")) for url in requested), requested
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors


def test_every_alert_has_a_runbook():
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    names = {rule["alert"] for group in alerts["groups"] for rule in group["rules"]}
    runbooks = set(re.findall(r"^## (\w+)$", (ROOT / "docs/runbooks.md").read_text(), re.M))
    assert names - runbooks == set(), "alerts without a runbook"


def test_the_readme_is_a_short_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for link in re.findall(r"\]\(((?!https?:)[^)#]+)", readme):
        assert (ROOT / link).exists(), link


def test_the_tests_the_guarantees_cite_exist():
    """`test_x.py::test_y`, and `::test_z` for another test of the same file."""
    page = (ROOT / "docs/guarantees.md").read_text()
    cited, module = [], None
    for file, name in re.findall(r"`(test_\w+\.py)?::(test_\w+)`", page):
        module = file or module
        cited.append((module, name))
    assert len(cited) > 30
    for module, name in cited:
        assert re.search(rf"^def {name}\(", (ROOT / "tests" / module).read_text(), re.M), (module, name)
    promises = page.split("## Each promise and the test that proves it")[1].split("\n\n**")[0]
    rows = [line for line in promises.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) > 30
    for row in rows:  # each promise names a test, not only a file
        assert "::test_" in row.rsplit("|", 2)[1], row
