"""Swagger UI in a real browser: /docs loads offline, "Authorize" logs in, /users/me answers.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them).
"""

import threading

import pytest
from werkzeug.serving import make_server

from support.browser import CHROMEDRIVER, CHROMIUM, headless_chromium
from support.client import register
from support.settings import PASSWORD, make_app

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Chromium: apt-get install chromium chromium-driver (.ci/run does)",
    ),
]
TIMEOUT = 20


@pytest.fixture
def live_server(database):
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def browser():
    driver = headless_chromium()
    yield driver
    driver.quit()


def test_swagger_ui_authorizes_with_the_password_flow_and_calls_users_me(live_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    app, base_url = live_server
    register(app.test_client(), "browser@example.com")
    wait = WebDriverWait(browser, TIMEOUT)

    browser.get(f"{base_url}/docs")
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "button.authorize"))).click()
    wait.until(ready.visibility_of_element_located((By.ID, "oauth_username"))).send_keys(
        "browser@example.com"
    )
    browser.find_element(By.ID, "oauth_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, ".auth-container button.authorize").click()
    # Once the token is granted the modal offers "Logout" instead of "Authorize".
    logout = (By.XPATH, "//div[contains(@class,'auth-container')]//button[normalize-space(.)='Logout']")
    wait.until(ready.visibility_of_element_located(logout))
    browser.find_element(By.CSS_SELECTOR, ".auth-container button.btn-done").click()

    operation = wait.until(ready.element_to_be_clickable((By.ID, "operations-auth-get_users_me")))
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(
        ready.element_to_be_clickable((By.CSS_SELECTOR, "#operations-auth-get_users_me .execute"))
    ).click()

    status = wait.until(
        ready.visibility_of_element_located(
            (
                By.CSS_SELECTOR,
                "#operations-auth-get_users_me .live-responses-table tbody .response-col_status",
            )
        )
    )
    body = browser.find_element(By.CSS_SELECTOR, "#operations-auth-get_users_me .live-responses-table pre")
    console = browser.get_log("browser")
    assert status.text.strip() == "200", console
    assert '"email": "browser@example.com"' in body.text
    # No CSP violation or failed asset load on the way (an API has no favicon).
    assert not [e for e in console if e["level"] == "SEVERE" and "favicon" not in e["message"]]
