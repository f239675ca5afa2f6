"""deploy/k8s: every manifest valid against the Kubernetes schemas (offline), and wired together.

Built-in kinds are validated with kubernetes-validate (it ships the Kubernetes JSON schemas; strict mode
rejects unknown fields). The ServiceMonitor (a CRD, not in those schemas) is checked field by field.
Kustomizations are rendered by a small renderer below (no kubectl needed); where kubectl exists its
`kubectl kustomize` output must be the same.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"
KUSTOMIZATIONS = ("base", "overlays/gpu", "locust")
DESIGN_GAUGES = {"servescope_queue_depth", "servescope_inflight_requests"}


def load_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


# A minimal kustomize: resources (files, folders), namespace, labels[].pairs (metadata only, as
# kustomize does without includeSelectors) and inline JSON 6902 patches with a kind/name target.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def render(folder: Path) -> list[dict[str, Any]]:
    """The resources of the kustomization in `folder`, with its transformations applied."""
    kustomization = load_documents(folder / "kustomization.yaml")[0]
    documents: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        documents.extend(render(path) if path.is_dir() else load_documents(path))
    documents = copy.deepcopy(documents)
    namespace = kustomization.get("namespace")
    for doc in documents:
        metadata = doc.setdefault("metadata", {})
        if namespace and doc["kind"] not in CLUSTER_SCOPED:
            metadata["namespace"] = namespace
        for label_set in kustomization.get("labels", []):
            metadata.setdefault("labels", {}).update(label_set.get("pairs", {}))
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matched = [
            doc
            for doc in documents
            if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]
        ]
        if len(matched) != 1:
            raise ValueError(f"patch target {target} matches {len(matched)} resources in {folder}")
        for operation in yaml.safe_load(patch["patch"]):
            _apply(matched[0], operation)
    return documents


def _apply(document: dict[str, Any], operation: dict[str, Any]) -> None:
    """Apply one JSON 6902 `add` or `replace` operation in place."""
    op = operation["op"]
    if op not in ("add", "replace"):
        raise ValueError(f"unsupported JSON patch op {op!r}")
    keys = [key.replace("~1", "/").replace("~0", "~") for key in operation["path"].lstrip("/").split("/")]
    parent: Any = document
    for key in keys[:-1]:
        parent = parent[int(key)] if isinstance(parent, list) else parent[key]
    last = keys[-1]
    value = copy.deepcopy(operation["value"])
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, value)
        else:
            parent[index] = value
    else:
        if op == "replace" and last not in parent:
            raise ValueError(f"replace of missing path {operation['path']!r}")
        parent[last] = value


def by_kind(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(K8S / name) for name in KUSTOMIZATIONS}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_builtin_resources_are_valid_against_kubernetes_schemas(rendered, kustomization: str) -> None:
    checked = []
    for doc in rendered[kustomization]:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked.append(doc["kind"])
    assert "Deployment" in checked
    assert all(d["metadata"].get("namespace") == "servescope" for d in rendered[kustomization]
               if d["kind"] != "Namespace")  # fmt: skip


def test_schema_validation_rejects_a_wrong_field(rendered) -> None:
    """The validator is strict: a misspelt probe field is an error (so the test above means something)."""
    deployment = copy.deepcopy(by_kind(rendered["base"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["prot"] = 8001
    with pytest.raises(kubernetes_validate.ValidationError, match="'prot' was unexpected"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renderer_matches_kubectl_kustomize(rendered, kustomization: str) -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S / kustomization)], capture_output=True, text=True, check=True
    )
    expected = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in rendered[kustomization]}
    assert ours == expected


def test_server_deployment_probes_ports_resources_and_security(rendered) -> None:
    docs = rendered["base"]
    deployment = by_kind(docs, "Deployment", "servescope-server")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8001, "metrics": 8002}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 8001, "service": ""}, probe
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SERVESCOPE_DEVICE"] == "cpu"
    assert env["SERVESCOPE_MODEL_REPOSITORY"] == "/models"
    assert env["SERVESCOPE_GRPC_PORT"] == "8001" and env["SERVESCOPE_METRICS_PORT"] == "8002"
    assert set(container["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    # The server drains within SERVESCOPE_GRACE_PERIOD_S after SIGTERM; Kubernetes must wait longer
    # (plus the preStop sleep) before it kills the pod.
    pre_stop_s = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > int(env["SERVESCOPE_GRACE_PERIOD_S"]) + pre_stop_s
    # Service and ServiceMonitor select the pods and name the ports that exist.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = by_kind(docs, "Service", "servescope-server")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    claim = by_kind(docs, "PersistentVolumeClaim")
    volume = next(v for v in pod["volumes"] if v["name"] == mounts["/models"]["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_service_monitor_scrapes_the_metrics_port(rendered) -> None:
    docs = rendered["base"]
    monitor = by_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}
    service = by_kind(docs, "Service", "servescope-server")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    headless = by_kind(docs, "Service", "servescope-server-headless")
    # Only one Service may match, or every pod is scraped twice.
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= headless["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert int(endpoint["scrapeTimeout"].rstrip("s")) < int(endpoint["interval"].rstrip("s"))


def test_hpa_metric_is_served_by_the_prometheus_adapter_rule(rendered) -> None:
    hpa = by_kind(rendered["base"], "HorizontalPodAutoscaler")
    deployment = by_kind(rendered["base"], "Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    values = load_documents(K8S / "prometheus-adapter" / "values.yaml")[0]
    rules = {rule["name"]["as"]: rule for rule in values["rules"]["custom"]}
    assert name in rules, f"HPA metric {name} has no prometheus-adapter rule; rules: {sorted(rules)}"
    rule = rules[name]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
    series = rule["seriesQuery"].split("{")[0]
    assert series in DESIGN_GAUGES
    assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
    for other in values["rules"]["custom"]:
        assert other["seriesQuery"].split("{")[0] in DESIGN_GAUGES


def test_gpu_overlay_requests_a_gpu_and_cuda(rendered) -> None:
    deployment = by_kind(rendered["overlays/gpu"], "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SERVESCOPE_DEVICE"] == "cuda"
    assert len(container["env"]) == len(by_kind(rendered["base"], "Deployment")["spec"]["template"]["spec"]
                                         ["containers"][0]["env"])  # fmt: skip
    tolerations = deployment["spec"]["template"]["spec"]["tolerations"]
    assert tolerations[0]["key"] == "nvidia.com/gpu"
    hpa = by_kind(rendered["overlays/gpu"], "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "32"


def test_locust_workers_reach_the_master_and_the_server(rendered) -> None:
    docs = rendered["locust"]
    master = by_kind(docs, "Deployment", "locust-master")
    worker = by_kind(docs, "Deployment", "locust-worker")
    service = by_kind(docs, "Service", "locust-master")
    assert service["spec"]["selector"].items() <= master["spec"]["template"]["metadata"]["labels"].items()
    assert 5557 in {p["port"] for p in service["spec"]["ports"]}
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    assert "--worker" in worker_container["args"]
    assert f"--master-host={service['metadata']['name']}" in worker_container["args"]
    assert "--master" in master["spec"]["template"]["spec"]["containers"][0]["args"]
    config_map = by_kind(docs, "ConfigMap", "locust-load")
    load = json.loads(config_map["data"]["SERVESCOPE_LOAD_CONFIG"])
    server_service = by_kind(rendered["base"], "Service", "servescope-server")
    assert load["target"] == f"{server_service['metadata']['name']}:8001"
    assert {"target", "model", "samples_dir"} <= load.keys()


def test_prometheus_rule_carries_the_rule_files_unchanged(rendered) -> None:
    """The operator's PrometheusRule is the generated copy of deploy/prometheus/rules/*.yml."""
    rule = by_kind(rendered["base"], "PrometheusRule")
    groups = []
    for path in sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml")):
        groups.extend(load_documents(path)[0]["groups"])
    assert rule["spec"]["groups"] == groups, (
        "deploy/k8s/base/prometheusrule.yaml is stale: run python deploy/prometheus/to_prometheusrule.py"
    )
    assert set(rule["spec"]) == {"groups"}
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
