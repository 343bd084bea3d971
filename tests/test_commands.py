"""Every command that docker-compose.yml, the Procfile, the Dockerfile and the Kubernetes manifests
name exists and starts.

Docker cannot run here, so each command of the service's own image is started in this environment,
where the same requirements are installed, in a way that loads its code and exits (see
``proof_of_loading``); the tests' settings stand in for a ``.env``.
"""

import json
import os
import re
import shlex
import subprocess

import pytest
import yaml

from support.commands import process_env
from support.kubernetes import kubernetes_containers, kubernetes_manifests
from support.settings import ROOT, make_app

with open(os.path.join(ROOT, "docker-compose.yml")) as compose_file:
    COMPOSE = yaml.safe_load(compose_file)
OUR_SERVICES = {name: service for name, service in COMPOSE["services"].items() if "build" in service}


def procfile_commands():
    with open(os.path.join(ROOT, "Procfile")) as procfile:
        for line in procfile:
            name, _, command = line.partition(":")
            words = shlex.split(command)
            # VAR=value (the process's own setting) and exec (the shell's): not its command
            while re.match(r"\w+=", words[0]) or words[0] == "exec":
                words.pop(0)
            yield f"Procfile {name}", words


def compose_commands():
    for name, service in OUR_SERVICES.items():
        yield f"compose {name}", service["command"]
        test = service.get("healthcheck", {}).get("test")
        if test:
            yield f"compose {name} healthcheck", test[1:]  # after "CMD"


def dockerfile_commands():
    with open(os.path.join(ROOT, "Dockerfile")) as dockerfile:
        instructions = dockerfile.read().replace("\\\n", " ").splitlines()
    for line in instructions:
        if line.startswith(("CMD ", "HEALTHCHECK ")):
            keyword = line.split()[0]
            yield f"Dockerfile {keyword}", json.loads(line.split("CMD", 1)[1])


def kubernetes_commands():
    """Each container's command and exec probes, once each (the three probes often share one)."""
    commands = {}
    for workload, _, container in kubernetes_containers(kubernetes_manifests()):
        commands.setdefault(tuple(container["command"]), f"k8s {workload}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if "exec" in container.get(probe, {}):
                commands.setdefault(tuple(container[probe]["exec"]["command"]), f"k8s {workload} {probe}")
    return [(name, list(command)) for command, name in commands.items()]


COMMANDS = [*procfile_commands(), *compose_commands(), *dockerfile_commands(), *kubernetes_commands()]


def run(command, tmp_path):
    """Run ``command`` as the service would, with the tests' settings (no ``.env`` needed)."""
    expanded = [os.path.expandvars(part) for part in command]
    environment = process_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    return subprocess.run(expanded, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


def proof_of_loading(command):
    """The command to run instead, and what it prints only once it loaded the code behind it.

    gunicorn's ``--check-config`` imports the WSGI app (exit 1 if it cannot) after ``--print-config``
    printed the settings of its configuration file; ``flask SUBCOMMAND --help`` builds the app to
    find the subcommand and prints its docstring; our modules print the usage their parser declares.
    """
    program = os.path.basename(command[0])
    if program == "gunicorn":
        return [*command, "--check-config", "--print-config"], "worker_class = gevent"
    if program == "flask":
        name = command[command.index("--app") + 2]
        return [*command, "--help"], make_app().cli.commands[name].help
    if command[1:2] == ["-m"]:
        return [*command, "--help"], f"usage: python -m {' '.join(command[2:4])}"
    return [*command, "--help"], "--redis-url"  # rq-dashboard, the one command from elsewhere


def words(text):
    return " ".join(text.split())


@pytest.mark.parametrize("command", [c for _, c in COMMANDS], ids=[name for name, _ in COMMANDS])
@pytest.mark.system
def test_the_command_exists_and_loads_its_code(command, tmp_path):
    proof_command, expected = proof_of_loading(command)
    result = run(proof_command, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert words(expected) in words(result.stdout + result.stderr)


@pytest.mark.system
def test_gunicorns_config_check_loads_the_app(tmp_path):
    result = run(["gunicorn", "-c", "gunicorn.conf.py", "wsgi:no_such_app", "--check-config"], tmp_path)
    assert result.returncode != 0
    assert "no_such_app" in result.stdout + result.stderr


def test_every_long_running_service_has_a_healthcheck():
    for name, service in COMPOSE["services"].items():
        if name != "migrate":
            assert service.get("healthcheck", {}).get("test"), name


def test_services_start_in_order():
    depends = {name: service.get("depends_on", {}) for name, service in COMPOSE["services"].items()}
    assert depends["migrate"] == {
        dependency: {"condition": "service_healthy"} for dependency in ("postgres", "redis", "rabbitmq")
    }
    for name in ("web", "relay", "consumer", "worker"):
        assert depends[name]["migrate"] == {"condition": "service_completed_successfully"}


def test_workers_can_be_scaled():
    worker = COMPOSE["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker


def test_no_secret_is_baked_into_the_image():
    with open(os.path.join(ROOT, "Dockerfile")) as dockerfile:
        text = dockerfile.read()
    assert "SECRET" not in text and "PASSWORD" not in text
    with open(os.path.join(ROOT, ".dockerignore")) as ignore:
        assert ".env" in ignore.read().split()
