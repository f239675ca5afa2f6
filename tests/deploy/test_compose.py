"""deploy/compose*.yaml: valid against the Compose Specification (offline) and wired to real files.

The schema is the compose-spec JSON schema vendored by the PyPI package check-jsonschema
(check_jsonschema/builtin_schemas/vendor/compose-spec.json, from github.com/compose-spec/compose-spec,
Apache-2.0), so no network is needed at test time.
"""

from __future__ import annotations

import argparse
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from server import cli as server_cli

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILES = (DEPLOY / "compose.yaml", DEPLOY / "compose.gpu.yaml")


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text(encoding="utf-8"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def server_env_names() -> set[str]:
    """SERVESCOPE_<FLAG> for every flag of `servescope serve` (the server reads each from the env)."""
    parser = argparse.ArgumentParser()
    server_cli.add_arguments(parser)
    names = set()
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                names.add("SERVESCOPE_" + option[2:].upper().replace("-", "_"))
    return names


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_is_valid_against_the_compose_specification(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(load(path))]
    assert errors == []


def test_schema_rejects_an_unknown_service_key() -> None:
    """The schema is strict enough to matter: a misspelt key is an error."""
    document = load(COMPOSE_FILES[0])
    document["services"]["server"]["helthcheck"] = {}
    validator = jsonschema.Draft202012Validator(compose_schema())
    messages = [e.message for e in validator.iter_errors(document)]
    assert any("'helthcheck' was unexpected" in message for message in messages), messages


def test_services_and_mounted_files_exist() -> None:
    compose = load(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert {"server", "prometheus", "grafana", "locust-master", "locust-worker"} <= services.keys()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: mounted {source} does not exist"
    # Locust only runs with the `load` profile; the server, Prometheus and Grafana always.
    assert services["locust-master"]["profiles"] == ["load"] == services["locust-worker"]["profiles"]
    assert all("profiles" not in services[name] for name in ("server", "prometheus", "grafana"))
    assert services["server"]["build"]["target"] == "server"
    assert services["locust-master"]["build"]["target"] == "loadtest"
    assert "--master" in services["locust-master"]["command"]
    assert "--master-host=locust-master" in services["locust-worker"]["command"]


def test_prometheus_scrapes_the_server_and_grafana_reads_prometheus() -> None:
    compose = load(DEPLOY / "compose.yaml")
    server = compose["services"]["server"]
    metrics_port = server["environment"]["SERVESCOPE_METRICS_PORT"]
    assert f"{metrics_port}:{metrics_port}" in server["ports"]
    config = load(DEPLOY / "prometheus" / "prometheus.yml")
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "servescope")
    assert job["static_configs"][0]["targets"] == [f"server:{metrics_port}"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasource = load(provisioning / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]
    provider = load(provisioning / "dashboards" / "servescope.yml")["providers"][0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    assert (DEPLOY / mounts[provider["options"]["path"]] / "servescope.json").is_file()


def test_gpu_override_reserves_nvidia_gpus_for_the_server() -> None:
    override = load(DEPLOY / "compose.gpu.yaml")["services"]
    assert override.keys() == {"server"}
    (device,) = override["server"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert override["server"]["environment"]["SERVESCOPE_DEVICE"] == "cuda"


def test_load_config_is_json_for_the_locustfile() -> None:
    """The x-load-config anchor with its ${VAR:-default} defaults applied is JSON for locustfile.py."""
    command = load(DEPLOY / "compose.yaml")["services"]["locust-worker"]["command"]
    (flag,) = [part for part in command if part.startswith("--servescope-config=")]
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", flag.split("=", 1)[1])
    config = json.loads(text)
    assert config["target"] == "server:8001"
    assert {"model", "mode", "batch_size", "samples_dir"} <= config.keys()


def test_server_settings_are_real_flags_everywhere() -> None:
    """Every SERVESCOPE_* variable set by the Dockerfile, Compose and Kubernetes names a serve flag."""
    known = server_env_names()
    assert {"SERVESCOPE_MODEL_REPOSITORY", "SERVESCOPE_GRPC_PORT", "SERVESCOPE_DEVICE"} <= known
    used = set(re.findall(r"\bSERVESCOPE_[A-Z_]+(?=[=:\s\"])", (REPO_ROOT / "Dockerfile").read_text()))
    used |= set(load(DEPLOY / "compose.yaml")["services"]["server"]["environment"])
    deployment = load(DEPLOY / "k8s" / "base" / "deployment.yaml")
    used |= {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert len(used) >= 8
    assert sorted(used - known) == []
