"""A file too big for one run's 64 MiB (the onnxruntime-gpu wheel, 256 MB) in checked parts: split it
here, carry one or two parts per run, gather them on the GPU machine (files outside $OUT stay there while
it is warm), and join them when all have arrived.

    python benchmarks/gpu/parts.py split onnxruntime_gpu-1.31.1-cp312-...whl .whl/all-parts --part-mib 50
    python benchmarks/gpu/parts.py receive .whl/parts /tmp/servescope-parts   # every run, on the machine
    python benchmarks/gpu/parts.py join /tmp/servescope-parts /tmp/servescope-wheels  # once all are there
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

MANIFEST = "manifest.json"


class PartsError(Exception):
    """A missing, corrupt or incomplete part: one line on stderr."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split(source: Path, output: Path, part_bytes: int) -> dict:
    """`source` cut into parts of `part_bytes` under `output`, with manifest.json (sizes and sha256)."""
    if part_bytes < 1:
        raise PartsError(f"part size {part_bytes} bytes: must be >= 1")
    if not source.is_file():
        raise PartsError(f"{source}: no such file")
    output.mkdir(parents=True, exist_ok=True)
    parts = []
    with source.open("rb") as handle:
        for index, block in enumerate(iter(lambda: handle.read(part_bytes), b"")):
            name = f"{source.name}.part{index:02d}"
            (output / name).write_bytes(block)
            parts.append({"file": name, "size": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    manifest = {"name": source.name, "size": source.stat().st_size, "sha256": _sha256(source), "parts": parts}
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise PartsError(f"{path}: no manifest (make the parts with `parts.py split`)")
    return json.loads(path.read_text())


def missing(folder: Path) -> list[str]:
    """The parts of the manifest in `folder` not there yet, or there with the wrong size or sha256."""
    manifest = _manifest(folder)
    return [
        p["file"]
        for p in manifest["parts"]
        if not (folder / p["file"]).is_file()
        or (folder / p["file"]).stat().st_size != p["size"]
        or _sha256(folder / p["file"]) != p["sha256"]
    ]


def receive(source: Path, store: Path) -> list[str]:
    """Copy the manifest and the parts that arrived in `source` into `store`, each checked against the
    manifest; returns the parts still missing."""
    manifest = _manifest(source)
    store.mkdir(parents=True, exist_ok=True)
    if (store / MANIFEST).is_file() and _manifest(store)["sha256"] != manifest["sha256"]:
        raise PartsError(f"{store}: holds parts of another file ({_manifest(store)['name']}); empty it first")
    shutil.copyfile(source / MANIFEST, store / MANIFEST)
    for part in manifest["parts"]:
        path = source / part["file"]
        if path.is_file():
            if _sha256(path) != part["sha256"]:
                raise PartsError(f"{path}: sha256 differs from the manifest: the part is corrupt")
            shutil.copyfile(path, store / part["file"])
    return missing(store)


def join(store: Path, output: Path) -> Path:
    """The whole file from its parts in `store`, checked against the manifest's size and sha256."""
    manifest = _manifest(store)
    absent = missing(store)
    if absent:
        raise PartsError(f"{store}: {len(absent)} of {len(manifest['parts'])} parts missing: {absent}")
    output.mkdir(parents=True, exist_ok=True)
    target = output / manifest["name"]
    with target.open("wb") as handle:
        for part in manifest["parts"]:
            handle.write((store / part["file"]).read_bytes())
    if _sha256(target) != manifest["sha256"]:
        target.unlink()
        raise PartsError(f"{target}: joined file's sha256 differs from the manifest")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("split", help="cut a file into parts with a manifest")
    s.add_argument("source", type=Path)
    s.add_argument("output", type=Path)
    s.add_argument("--part-mib", type=float, default=50.0, help="MiB per part (a run carries 64 MiB in all)")
    r = verbs.add_parser("receive", help="store the parts that came with this run")
    r.add_argument("source", type=Path)
    r.add_argument("store", type=Path)
    j = verbs.add_parser("join", help="join the stored parts once all are there")
    j.add_argument("store", type=Path)
    j.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.verb == "split":
            manifest = split(args.source, args.output, int(args.part_mib * (1 << 20)))
            print(f"parts: {len(manifest['parts'])} parts of {manifest['name']} in {args.output}")
        elif args.verb == "receive":
            absent = receive(args.source, args.store)
            total = len(_manifest(args.store)["parts"])
            print(f"parts: {total - len(absent)} of {total} parts stored in {args.store}; missing: {absent}")
        else:
            print(f"parts: joined {join(args.store, args.output)}")
    except PartsError as exc:
        print(f"parts: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
