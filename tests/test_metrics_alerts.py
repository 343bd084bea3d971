"""The shipped alert rules, each run by ``promtool test rules`` on series that should fire it.

Every alert has a case: the series it watches, a time when it must not fire yet (or not at all)
and a time when it fires, with its labels and its summary as Prometheus renders it.
"""

import os
import shutil
import subprocess

import pytest
import yaml

from support.settings import ROOT

RULES = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
PROMTOOL = shutil.which("promtool")
WEB = 'job="web", instance="web-1:8000"'

CASES = {
    "OrdersTargetDown": {
        "series": {'up{job="relay", instance="relay:9100"}': "1 0x8"},
        "quiet": "30s",  # down, not yet for a minute
        "fires": "2m",
        "labels": {"severity": "critical", "job": "relay", "instance": "relay:9100"},
        "summary": "relay at relay:9100 cannot be scraped",
    },
    "OrdersOutboxBacklog": {
        "series": {  # two web replicas report the same backlog: one alert
            'orders_outbox_oldest_pending_age_seconds{job="web", instance="web-1:8000"}': "0+15x10",
            'orders_outbox_oldest_pending_age_seconds{job="web", instance="web-2:8000"}': "0+15x10",
        },
        "quiet": "1m",
        "fires": "2m",
        "labels": {"severity": "warning", "job": "web"},
        "summary": "An order event has waited 2m 0s in the outbox",
    },
    "OrdersUnprocessed": {
        "series": {f"orders_unprocessed_oldest_age_seconds{{{WEB}}}": "0+15x30"},
        "quiet": "3m",
        "fires": "5m",
        "labels": {"severity": "warning", "job": "web"},
        "summary": "An order has waited 5m 0s to be processed",
    },
    "OrdersDeadLettered": {
        "series": {
            'orders_events_dead_lettered_total{job="consumer", instance="consumer:9100"}': "0 0 0 1 1 1",
            'orders_events_dead_lettered_total{job="relay", instance="relay:9100"}': "0x5",
        },
        "quiet": "30s",
        "fires": "1m15s",
        "labels": {"severity": "warning", "job": "consumer"},
        "summary": "The consumer dead-lettered messages in the last 10 minutes",
    },
    "OrdersFailedJobsGrowing": {
        "series": {f'orders_rq_jobs{{{WEB}, queue="orders", state="failed"}}': "3 3 3 4 4"},
        "quiet": "30s",  # failed jobs, but none new
        "fires": "1m",
        "labels": {"severity": "warning", "job": "web", "queue": "orders", "state": "failed"},
        "summary": "Jobs keep landing in RQ's failed registry of queue orders",
    },
    "OrdersHttpErrors": {
        "series": {
            f'http_requests_total{{{WEB}, method="GET", route="/orders/", status="200"}}': "0+98x40",
            f'http_requests_total{{{WEB}, method="POST", route="/orders/", status="503"}}': "0+2x40",
        },
        "quiet": "4m",  # 2 % of the answers, not yet for 5 minutes
        "fires": "10m",
        "labels": {"severity": "critical", "job": "web"},
        "summary": "2% of the API's answers are 5xx",
    },
    "OrdersDatabaseUnreadable": {
        "series": {f"up{{{WEB}}}": "1x20", f"orders_outbox_pending{{{WEB}}}": "0 0 stale"},
        "quiet": "1m",
        "fires": "3m",
        "labels": {"severity": "critical", "job": "web", "instance": "web-1:8000"},
        "summary": "The web at web-1:8000 cannot read PostgreSQL for its metrics",
    },
    "OrdersRedisUnreadable": {
        "series": {
            f"up{{{WEB}}}": "1x20",
            f'orders_rq_jobs{{{WEB}, queue="orders", state="queued"}}': "0 0 stale",
        },
        "quiet": "1m",
        "fires": "3m",
        "labels": {"severity": "critical", "job": "web", "instance": "web-1:8000"},
        "summary": "The web at web-1:8000 cannot read Redis for its metrics",
    },
}


def shipped_alerts():
    with open(RULES) as rules:
        return {rule["alert"]: rule for group in yaml.safe_load(rules)["groups"] for rule in group["rules"]}


def test_every_alert_has_a_summary_a_description_and_a_case():
    alerts = shipped_alerts()
    assert set(alerts) == set(CASES)
    for rule in alerts.values():
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80


@pytest.mark.skipif(not PROMTOOL, reason="needs promtool: apt-get install prometheus")
@pytest.mark.parametrize("alert", CASES)
@pytest.mark.system
def test_the_alert_fires_on_its_condition_only(alert, tmp_path):
    case, rule = CASES[alert], shipped_alerts()[alert]
    expected = {
        "exp_labels": case["labels"],
        "exp_annotations": {"summary": case["summary"], "description": rule["annotations"]["description"]},
    }
    unit_test = {
        "rule_files": [RULES],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in case["series"].items()],
                "alert_rule_test": [
                    {"eval_time": case["quiet"], "alertname": alert, "exp_alerts": []},
                    {"eval_time": case["fires"], "alertname": alert, "exp_alerts": [expected]},
                ],
            }
        ],
    }
    test_file = tmp_path / "test.yml"
    test_file.write_text(yaml.safe_dump(unit_test))
    result = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
