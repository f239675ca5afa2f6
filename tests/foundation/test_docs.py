"""The project's docs and docstrings stand on their own: every file they name exists in the repository, and
none cites a brief that lives outside it (a user or a future maintainer would not have it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOP_FOLDERS = (
    "server", "loadtest", "analysis", "cli", "servescope", "exporter", "benchmarks", "deploy", "docs",
    "tests", "proto", r"\.ci",
)  # fmt: skip
SUFFIXES = ("py", "md", "yaml", "yml", "sh", "json", "proto", "pbtxt", "html", "toml", "txt", "j2")
# A repository path: a top-level folder, then path characters, ending in a known suffix; not part of a
# longer path or a URL (no word character, dot, slash or dash right before it).
PATH = re.compile(
    rf"(?<![\w./-])((?:{'|'.join(TOP_FOLDERS)})/[\w./-]*[\w-]\.(?:{'|'.join(SUFFIXES)}))(?![\w/])"
)
# Names that look like paths but are not files: the protocol's descriptor names, as protobuf registers them.
NOT_FILES = {"servescope/protocol/grpc_service.proto", "servescope/protocol/model_config.proto"}
OUTSIDE_BRIEFS = re.compile(r"DESIGN\.md|STYLE\.md|ECOSYSTEM-FACTS\.md|\.\./shared/")


def tracked_texts() -> dict[str, str]:
    """Every tracked source and documentation file but the generated protocol modules, by path."""
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    wanted = (".py", ".md", ".yaml", ".yml", ".sh", ".toml")
    return {
        name: (REPO_ROOT / name).read_text(errors="replace")
        for name in listed
        if name.endswith(wanted) and "_pb2" not in name and (REPO_ROOT / name).is_file()
    }


def test_every_file_the_docs_and_code_name_exists() -> None:
    missing = {
        (name, cited)
        for name, text in tracked_texts().items()
        for cited in PATH.findall(text)
        if cited not in NOT_FILES and not (REPO_ROOT / cited).exists()
    }
    assert not missing, "files named but not in the repository:\n" + "\n".join(
        f"  {name}: {cited}" for name, cited in sorted(missing)
    )


def test_nothing_cites_the_teams_private_briefs() -> None:
    citing = sorted(name for name, text in tracked_texts().items() if OUTSIDE_BRIEFS.search(text))
    assert citing == [], citing


def test_the_path_pattern_finds_paths_and_skips_lookalikes() -> None:
    text = (
        "see docs/server.md and `server/app.py`; https://example.org/docs/server.md is a URL, "
        "deploy/prometheus/tests/alerts_test.yml a path, servescope.workers a parameter, "
        "my/server/app.py a longer path"
    )
    expected = ["docs/server.md", "server/app.py", "deploy/prometheus/tests/alerts_test.yml"]
    assert PATH.findall(text) == expected
