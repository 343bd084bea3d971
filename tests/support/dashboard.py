"""rq-dashboard's login in the tests, and what it answers."""

import base64
import json
import urllib.error
import urllib.request

LOGIN = {"RQ_DASHBOARD_USERNAME": "operator", "RQ_DASHBOARD_PASSWORD": "a-dashboard-password-for-tests"}


def status_of(url, login=None):
    request = urllib.request.Request(url)
    if login:
        credentials = base64.b64encode(":".join(login).encode()).decode()
        request.add_header("Authorization", f"Basic {credentials}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read()) if url.endswith(".json") else None
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:
        return None, None
