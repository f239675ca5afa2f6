"""Write deploy/k8s/base/prometheusrule.yaml: the rules of deploy/prometheus/rules/ as a PrometheusRule.

The Prometheus Operator loads rules from PrometheusRule resources, not from files; this wraps the same
groups so Compose and Kubernetes alert alike. Run after editing a rule file (a test checks the copy):
    python deploy/prometheus/to_prometheusrule.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
OUTPUT = HERE.parent / "k8s" / "base" / "prometheusrule.yaml"
HEADER = "# Generated from deploy/prometheus/rules/*.yml by deploy/prometheus/to_prometheusrule.py.\n"


def build() -> dict:
    groups = []
    for path in sorted((HERE / "rules").glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "servescope",
            "labels": {"app.kubernetes.io/name": "servescope", "app.kubernetes.io/component": "server"},
        },
        "spec": {"groups": groups},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the longer PromQL expressions) as literal blocks, as in the rule files."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render() -> str:
    return HEADER + yaml.dump(build(), Dumper=_Dumper, sort_keys=False, width=110)


def main() -> int:
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
