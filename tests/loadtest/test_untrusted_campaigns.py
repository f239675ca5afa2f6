"""Untrusted campaign files: no traceback, exit 2, one line naming the file and the key with the value cut
to a bounded length; the YAML alias bomb is refused within 1 s and 200 MB."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from cli.main import main
from loadtest.campaign_config import CampaignConfigError, load_campaign_config

PREFIX = "servescope campaign: error: "


def alias_bomb(levels: int = 12, width: int = 9) -> str:
    """The billion laughs under one key (`lols`): its last entry expands to width**levels strings."""
    entries = ["  - &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        entries.append(f"  - &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "models: [m]\nload: {concurrency: [1]}\nlols:\n" + "\n".join(entries) + "\n"


def nested(depth: int) -> str:
    return "models: " + "[" * depth + "]" * depth + "\n"


# (case id, file content, fragments of the one error line)
CAMPAIGNS: list[tuple[str, bytes, list[str]]] = [
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", ["not UTF-8 text (byte b'\\x89' at offset 0)"]),
    ("control-chars", b"models: [m]\x00\x01\n", ["not valid YAML", "special characters are not allowed"]),
    ("deeply-nested", nested(100_000).encode(), ["not a campaign file: YAML nested too deeply"]),
    ("nan-integer", b"models: [m]\nload: {concurrency: [1]}\nseed: .nan\n", ["seed: nan must be an integer"]),
    (
        "nan-number",
        b"models: [m]\nload: {concurrency: [1]}\nstep: {duration_s: .nan}\n",
        ["step.duration_s: nan must be a finite number"],
    ),
    (
        "inf-rate",
        b"models: [m]\nload: {rates_rps: [.inf]}\n",
        ["load.rates_rps[0]: inf must be a finite number"],
    ),
    (
        "huge-integer",
        b"models: [m]\nload: {concurrency: [1]}\nseed: " + b"9" * 20_000 + b"\n",
        ["not a campaign file: Exceeds the limit"],
    ),
    (
        "long-unknown-key",
        b"models: [m]\nload: {concurrency: [1]}\n" + b"k" * 1000 + b": 1\n",
        ["'kkkk", "...[cut: 1000 chars in all]", "is not a known key"],
    ),
    ("top-level-list", b"- models\n- load\n", [": ['models', 'load'] must be a mapping"]),
    ("too-large", b"# " + b"x" * (2 << 20) + b"\n", ["larger than 1048576 bytes, not a campaign file"]),
    ("int-model", b"models: [7]\nload: {concurrency: [1]}\n", ["models[0]: 7 must be a non-empty string"]),
    ("alias-bomb", alias_bomb().encode(), ["lols: [['lol', 'lol',", "is not a known key"]),
]


@pytest.mark.parametrize(("case", "content", "fragments"), CAMPAIGNS, ids=[c[0] for c in CAMPAIGNS])
def test_a_bad_campaign_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, content: bytes, fragments: list[str]
) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(content)
    code = main(["campaign", str(path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith(PREFIX + f"{path}: "), err[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]
    assert len(lines[0]) < 1200
    assert not (tmp_path / "out").exists()


def test_the_alias_bomb_is_refused_within_1_s_and_200_mb(tmp_path: Path) -> None:
    """9**13 (2.5 trillion) strings if expanded, all under one unknown key: the error message shows it."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(levels=12))
    tracemalloc.start()
    start_s = time.perf_counter()
    try:
        with pytest.raises(CampaignConfigError) as raised:
            load_campaign_config(path)
        elapsed_s = time.perf_counter() - start_s
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(raised.value)
    assert elapsed_s < 1.0 and peak_bytes < 200 << 20, (elapsed_s, peak_bytes)
    assert message.startswith(f"{path}: ") and "is not a known key" in message
    assert len(message) < 1200
