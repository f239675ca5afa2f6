"""servescope.cores: affinity capped by a cgroup quota, read from cgroup v2 and v1 files."""

from __future__ import annotations

from pathlib import Path

from servescope import cores


def test_quota_from_cgroup_v2_and_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cores.quota_cores(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cores.quota_cores(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cores.quota_cores(v1) == 3.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cores.quota_cores(v1) is None
    assert cores.quota_cores(tmp_path / "none") is None


def test_available_cores_is_the_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = cores.affinity_cores()
    assert cores.available_cores(root=tmp_path / "none") == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core: still one whole core
    assert cores.available_cores(root=tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{(affinity + 4) * 100000} 100000\n")  # above the affinity
    assert cores.available_cores(root=tmp_path) == affinity
