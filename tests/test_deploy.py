"""What the schemas cannot check in deploy/k8s (as kustomize renders it) and in the compose stack's
proxy: probes on real endpoints and ports, one image, settings that the service documents, the
Services, autoscalers and budgets on the pods they mean, hardened pods, scalable web replicas.

`make lint` validates the same manifests against Kubernetes' schemas; tests/test_commands.py starts
every command they name.
"""

import os
import re
import runpy
from collections import defaultdict
from urllib.parse import urlsplit

import pytest
import yaml
from rq_dashboard.cli import make_flask_app
from rq_dashboard.cli import run as rq_dashboard_command

from support.kubernetes import kubernetes_containers, kubernetes_manifests
from support.settings import ROOT, TEST_REDIS_URL, make_app

MANIFESTS = kubernetes_manifests()
CONTAINERS = list(kubernetes_containers(MANIFESTS))
BY_KIND = defaultdict(dict)
for _manifest in MANIFESTS:
    BY_KIND[_manifest["kind"]][_manifest["metadata"]["name"]] = _manifest
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def read(*path):
    with open(os.path.join(ROOT, *path)) as file:
        return file.read()


def env_file_names(*path):
    """The names an env file sets or documents (``NAME=`` or ``# NAME=``)."""
    return set(re.findall(r"^#? ?([A-Z][A-Za-z0-9_]*)=", read(*path), re.MULTILINE))


DOCUMENTED = env_file_names(".env.example")
SECRET_KEYS = env_file_names("deploy", "k8s", "secret.example.env")
SECRET_NAME = re.search(r"create secret generic (\S+)", read("deploy", "k8s", "secret.example.env"))[1]
# The Redis users of the workers and rq-dashboard, in a Secret of their own (only their pods get it).
REDIS_USERS_KEYS = env_file_names("deploy", "k8s", "redis-users.example.env")
REDIS_USERS_NAME = re.search(
    r"create secret generic (\S+)", read("deploy", "k8s", "redis-users.example.env")
)[1]
SECRET_REFERENCES = {(SECRET_NAME, key) for key in SECRET_KEYS} | {
    (REDIS_USERS_NAME, k) for k in REDIS_USERS_KEYS
}
# rq-dashboard reads each of its options from RQ_DASHBOARD_<OPTION> (click's auto_envvar_prefix).
RQ_DASHBOARD_VARIABLES = {f"RQ_DASHBOARD_{param.name.upper()}" for param in rq_dashboard_command.params}


def env_names(container):
    """Every variable the container gets: its own ``env`` and the keys of its ``envFrom`` sources."""
    names = {variable["name"] for variable in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(BY_KIND["ConfigMap"][source["configMapRef"]["name"]]["data"])
        else:
            assert source["secretRef"]["name"] == SECRET_NAME
            names |= SECRET_KEYS
    return names


def env_value(container, name):
    return next(variable["value"] for variable in container["env"] if variable["name"] == name)


def container_port(container, port):
    """The number of a probe's or Service's port (a name or a number) in this container."""
    ports = {entry.get("name"): entry["containerPort"] for entry in container.get("ports", [])}
    assert port in ports or port in ports.values(), f"{container['name']} has no port {port}"
    return ports.get(port, port)


def pods_selected_by(selector):
    """``(workload, pod, container)`` of the Deployments whose pods carry every label of ``selector``."""
    return [
        (workload, pod, container)
        for workload, pod, container in CONTAINERS
        if workload.startswith("Deployment/")
        and selector.items() <= pod_labels(workload.removeprefix("Deployment/")).items()
    ]


def pod_labels(deployment):
    return BY_KIND["Deployment"][deployment]["spec"]["template"]["metadata"]["labels"]


def container_of(workload):
    (container,) = [container for name, _, container in CONTAINERS if name == workload]
    return container


def test_every_process_has_its_workload():
    commands = {workload: container["command"] for workload, _, container in CONTAINERS}
    assert commands == {
        "Job/migrate": ["flask", "--app", "orders_app", "prestart"],
        "Deployment/web": ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        "Deployment/relay": ["flask", "--app", "orders_app", "relay"],
        "Deployment/consumer": ["python", "-m", "consumer"],
        "Deployment/worker": ["flask", "--app", "orders_app", "worker"],
        "Deployment/rq-dashboard": ["rq-dashboard", "--json", "--port", "9181"],
    }


def test_the_same_image_everywhere():
    assert {container["image"] for _, _, container in CONTAINERS} == {
        "registry.example.com/orders-service:1.0.0"
    }


def test_every_variable_is_a_documented_setting():
    for workload, _, container in CONTAINERS:
        unknown = env_names(container) - DOCUMENTED - RQ_DASHBOARD_VARIABLES
        assert not unknown, f"{workload} sets {unknown}, which .env.example does not document"
        for variable in container.get("env", []):
            if "valueFrom" in variable:
                reference = variable["valueFrom"]["secretKeyRef"]
                assert (reference["name"], reference["key"]) in SECRET_REFERENCES
    assert {"DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "JWT_SECRET_KEY"} <= SECRET_KEYS


def test_no_secret_value_is_committed():
    assert "Secret" not in BY_KIND
    lines = read("deploy", "k8s", "secret.example.env") + read("deploy", "k8s", "redis-users.example.env")
    for line in lines.splitlines():
        name, _, value = line.partition("=")
        if name in {"JWT_SECRET_KEY", "RQ_DASHBOARD_PASSWORD"}:
            assert value == ""
        elif name.endswith("_URL"):
            assert "CHANGE-ME" in value


def test_the_dashboard_gets_only_redis_and_its_login():
    container = container_of("Deployment/rq-dashboard")
    assert "envFrom" not in container
    assert env_names(container) == {
        "RQ_DASHBOARD_REDIS_URL",
        "RQ_DASHBOARD_USERNAME",
        "RQ_DASHBOARD_PASSWORD",
    }


def gunicorn_port_setting():
    """The port gunicorn.conf.py binds, read without keeping what it exports to its workers
    (PROMETHEUS_MULTIPROC_DIR would switch this process's /metrics to multiprocess mode)."""
    environment = dict(os.environ)
    try:
        return runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))["bind"].rsplit(":", 1)[1]
    finally:
        os.environ.clear()
        os.environ.update(environment)


def test_web_probes_are_routes_of_the_app_on_gunicorns_port():
    container = container_of("Deployment/web")
    gunicorn_port = int(gunicorn_port_setting())
    routes = make_app().url_map.bind("localhost")
    paths = {}
    for probe in PROBES:
        http_get = container[probe]["httpGet"]
        assert container_port(container, http_get["port"]) == gunicorn_port
        assert routes.match(http_get["path"], method="GET")
        paths[probe] = http_get["path"]
    # Traffic once the dependencies answered; then a shared outage must not empty the Service.
    assert paths == {"startupProbe": "/health/ready", "readinessProbe": "/health", "livenessProbe": "/health"}


def test_dashboard_probes_answer_without_the_login():
    container = container_of("Deployment/rq-dashboard")
    port = int(container["command"][container["command"].index("--port") + 1])
    dashboard = make_flask_app(None, "operator", "a password", "")
    dashboard.config["RQ_DASHBOARD_REDIS_URL"] = [TEST_REDIS_URL]
    dashboard = dashboard.test_client()
    assert dashboard.get("/").status_code == 401
    for probe in ("readinessProbe", "livenessProbe"):
        assert container_port(container, container[probe]["httpGet"]["port"]) == port
        assert dashboard.get(container[probe]["httpGet"]["path"]).status_code == 200


@pytest.mark.parametrize("name", ["relay", "consumer"])
def test_heartbeat_probes_read_the_file_the_process_writes(name):
    container = container_of(f"Deployment/{name}")
    heartbeat = env_value(container, "FLASK_HEARTBEAT_FILE")
    for probe in PROBES:
        assert container[probe]["exec"]["command"][:4] == ["python", "-m", "orders_app.healthcheck", "file"]
        assert container[probe]["exec"]["command"][4] == heartbeat
    mounts = [mount["mountPath"] for mount in container["volumeMounts"]]
    assert os.path.dirname(heartbeat) in mounts  # writable on a read-only root filesystem


def test_worker_probes_check_its_rq_registration():
    container = container_of("Deployment/worker")
    for probe in PROBES:
        assert container[probe]["exec"]["command"] == ["python", "-m", "orders_app.healthcheck", "rq-worker"]


def test_pods_are_hardened_and_bounded():
    for workload, pod, container in CONTAINERS:
        assert pod["securityContext"]["runAsNonRoot"] is True, workload
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        assert pod["automountServiceAccountToken"] is False, workload
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, workload
        assert set(container["resources"]) == {"requests", "limits"}, workload
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, workload
        if workload != "Job/migrate":
            assert "/tmp" in [mount["mountPath"] for mount in container["volumeMounts"]], workload
    assert BY_KIND["Namespace"]["orders"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )


def test_web_gets_the_time_to_drain():
    deployment = BY_KIND["Deployment"]["web"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    drain = int(env_value(container, "GUNICORN_GRACEFUL_TIMEOUT"))
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_services_reach_the_ports_the_processes_listen_on():
    web, metrics = BY_KIND["Service"]["web"], BY_KIND["Service"]["metrics"]
    assert [workload for workload, _, _ in pods_selected_by(web["spec"]["selector"])] == ["Deployment/web"]
    selected = pods_selected_by(metrics["spec"]["selector"])
    assert sorted(workload for workload, _, _ in selected) == [
        "Deployment/consumer",
        "Deployment/relay",
        "Deployment/worker",
    ]
    for service, pods in ((web, pods_selected_by(web["spec"]["selector"])), (metrics, selected)):
        annotations = service["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        for _, _, container in pods:
            for port in service["spec"]["ports"]:
                container_port(container, port["targetPort"])
            assert container_port(container, int(annotations["prometheus.io/port"]))
            if service is metrics:
                assert env_value(container, "FLASK_METRICS_PORT") == annotations["prometheus.io/port"]


def test_autoscalers_and_disruption_budgets_cover_the_scaled_processes():
    autoscaled = {
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in BY_KIND["HorizontalPodAutoscaler"].values()
    }
    assert autoscaled == {"web", "worker"}
    for name in autoscaled:
        assert "replicas" not in BY_KIND["Deployment"][name]["spec"]  # the autoscaler owns the count
        assert BY_KIND["HorizontalPodAutoscaler"][name]["spec"]["minReplicas"] >= 2
    for name in ("relay", "consumer"):
        assert BY_KIND["Deployment"][name]["spec"]["replicas"] >= 2
    budgets = {
        workload.split("/")[1]
        for budget in BY_KIND["PodDisruptionBudget"].values()
        for workload, _, _ in pods_selected_by(budget["spec"]["selector"]["matchLabels"])
    }
    assert budgets == {"web", "relay", "consumer", "worker"}


def secret_reference(container, name):
    reference = next(v for v in container["env"] if v["name"] == name)["valueFrom"]["secretKeyRef"]
    return reference["name"], reference["key"]


def test_each_process_has_its_own_redis_user():
    users = {key: urlsplit(value).username for key, value in (
        line.split("=", 1) for line in (read("deploy", "k8s", "secret.example.env")
                                        + read("deploy", "k8s", "redis-users.example.env")).splitlines()
        if line.endswith("/0"))}  # fmt: skip
    assert users == {
        "REDIS_URL": "orders",
        "WORKER_REDIS_URL": "worker",
        "DASHBOARD_REDIS_URL": "rq-dashboard",
    }
    acl_users = set(re.findall(r"^user (\S+) on ", read("deploy", "redis", "users.acl"), re.MULTILINE))
    assert set(users.values()) < acl_users
    assert secret_reference(container_of("Deployment/worker"), "REDIS_URL") == (
        REDIS_USERS_NAME,
        "WORKER_REDIS_URL",
    )
    dashboard = container_of("Deployment/rq-dashboard")
    assert secret_reference(dashboard, "RQ_DASHBOARD_REDIS_URL") == (REDIS_USERS_NAME, "DASHBOARD_REDIS_URL")
    assert not any("redis" in word.lower() for word in dashboard["command"])  # not visible in ps
    for workload, _, container in CONTAINERS:
        if workload not in ("Deployment/worker", "Deployment/rq-dashboard"):
            assert "orders-redis-users" not in str(container), workload


def test_ingress_routes_every_api_path_but_metrics():
    (ingress,) = BY_KIND["Ingress"].values()
    paths = [path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    assert {path["backend"]["service"]["name"] for path in paths} == {"web"}

    def routed(url):  # Kubernetes' Exact and (whole-segment) Prefix matching
        return any(
            url == path["path"]
            or (path["pathType"] == "Prefix" and (url + "/").startswith(path["path"].rstrip("/") + "/"))
            for path in paths
        )

    examples = {"<uuid:order_id>": "5b0c2a4e-7d4e-4a43-9a39-0d3b9e1c2f10", "<int:user_id>": "1",
                "<path:filename>": "a/b.js"}  # fmt: skip
    for rule in make_app().url_map.iter_rules():
        url = rule.rule
        for placeholder, example in examples.items():
            url = url.replace(placeholder, example)
        assert routed(url) == (rule.rule != "/metrics"), rule.rule
    for path in ("/metrics/", "/metricsx", "/tokens", "/orders-admin"):  # no segment of a routed path
        assert not routed(path), path


def allowed_ingress(pod_labels):
    """``{(port, namespace)}`` the NetworkPolicies let reach pods with these labels."""
    allowed = set()
    for policy in BY_KIND["NetworkPolicy"].values():
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if selector.items() <= pod_labels.items():
            for rule in policy["spec"].get("ingress", []):
                for source in rule["from"]:
                    namespace = source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    allowed |= {(port["port"], namespace) for port in rule["ports"]}
    return allowed


def allowed_egress_ports(pod_labels):
    allowed = set()
    for policy in BY_KIND["NetworkPolicy"].values():
        selector = policy["spec"]["podSelector"]
        matches = selector.get("matchLabels", {}).items() <= pod_labels.items() and all(
            pod_labels.get(expression["key"]) in expression["values"]
            for expression in selector.get("matchExpressions", [])
        )
        if matches:
            allowed |= {port["port"] for rule in policy["spec"].get("egress", []) for port in rule["ports"]}
    return allowed


def test_network_policies_deny_by_default_and_allow_what_each_process_needs():
    deny = BY_KIND["NetworkPolicy"]["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    ingress_controller, prometheus = "ingress-nginx", "monitoring"
    expected = {
        "web": ({(8000, ingress_controller), (8000, prometheus)}, {53, 5432, 6379, 5672, 4318}),
        "relay": ({(9100, prometheus)}, {53, 5432, 6379, 5672, 4318}),
        "consumer": ({(9100, prometheus)}, {53, 5432, 6379, 5672, 4318}),
        "worker": ({(9100, prometheus)}, {53, 5432, 6379, 4318}),
        "rq-dashboard": (set(), {53, 6379}),
        "migrate": (set(), {53, 5432, 6379, 5672}),
    }
    for workload, _, container in CONTAINERS:
        kind, name = workload.split("/")
        labels = BY_KIND[kind][name]["spec"]["template"]["metadata"]["labels"]
        assert (allowed_ingress(labels), allowed_egress_ports(labels)) == expected[name], workload
        for port, _ in allowed_ingress(labels):
            container_port(container, port)  # a port the process listens on


def test_images_are_ours_or_pinned_by_digest():
    for workload, _, container in CONTAINERS:
        image = container["image"]
        assert image.startswith("registry.example.com/orders-service") or "@sha256:" in image, workload
    assert "pin it by digest" in read("deploy", "k8s", "kustomization.yaml")


COMPOSE = yaml.safe_load(read("docker-compose.yml"))


def test_compose_web_scales_behind_the_proxy():
    services = COMPOSE["services"]
    web, proxy = services["web"], services["proxy"]
    assert "ports" not in web and "container_name" not in web
    assert web["environment"]["FLASK_TRUSTED_PROXIES"] == "1"
    published = {
        name for name, service in services.items() if any("8000" in p for p in service.get("ports", []))
    }
    assert published == {"proxy"}
    config_file, target, _ = proxy["volumes"][0].split(":")
    assert os.path.isfile(os.path.join(ROOT, config_file)) and target == "/etc/nginx/nginx.conf"
    config = read(config_file)
    gunicorn_port = gunicorn_port_setting()
    assert f"set $web http://web:{gunicorn_port};" in config
    assert "client_max_body_size 64k;" in config and make_app().config["MAX_CONTENT_LENGTH"] == 64 * 1024
