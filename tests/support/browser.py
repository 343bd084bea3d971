"""Headless Chromium driven by Selenium, as the probe of this machine starts it (no background
networking: the closed network would refuse its connections)."""

import shutil

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def headless_chromium(*flags, window="1280,2000", logs=("browser",)):
    """A new headless Chromium with ``flags`` added; the log types in ``logs`` are all kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--window-size={window}",
        *flags,
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", dict.fromkeys(logs, "ALL"))
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
