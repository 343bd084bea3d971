"""The Kubernetes manifests as the cluster would get them."""

import os
import subprocess
import sys

import yaml

from .settings import ROOT


def kubernetes_manifests():
    """deploy/k8s as ``kubectl kustomize`` renders it (requirements-dev.txt installs kubectl)."""
    kubectl = os.path.join(os.path.dirname(sys.executable), "kubectl")
    command = [kubectl, "kustomize", os.path.join(ROOT, "deploy", "k8s")]
    return list(
        yaml.safe_load_all(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    )


def kubernetes_containers(manifests):
    """``(workload, pod spec, container)`` for every container of the Deployments and Jobs."""
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "Job"):
            pod = manifest["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield f"{manifest['kind']}/{manifest['metadata']['name']}", pod, container
