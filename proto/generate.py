"""Regenerate servescope/protocol/*_pb2*.py (and the *_pb2.pyi type stubs the type checker reads) from the
.proto files beside this script.

Run it with `make proto` (or `python proto/generate.py [OUTPUT_ROOT]`). The generated modules are
committed; tests/foundation/test_protocol.py fails when they no longer match the .proto sources.

The messages live in package `inference`, as the protocol requires, which is also the package of
tritonclient's own copy of the protocol. Two definitions of `inference.ModelInferRequest` cannot share
protobuf's default descriptor pool ("duplicate symbol"), so the generated modules are rewritten to
register in servescope's private pool instead. Wire compatibility depends only on field numbers and the
service path (/inference.GRPCInferenceService/...), not on the pool, and servescope can then be imported
next to tritonclient in one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PROTO_FILES = ("servescope/protocol/model_config.proto", "servescope/protocol/grpc_service.proto")
DEFAULT_POOL_CALL = "_descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL_IMPORT = "from servescope.protocol._pool import POOL as _PRIVATE_POOL\n"
PRIVATE_POOL_CALL = "_PRIVATE_POOL.AddSerializedFile("


def generate(output_root: Path) -> list[Path]:
    """Compile the .proto files into output_root and move them into the private pool.

    Returns the paths of the generated files (*_pb2.py, its *_pb2.pyi stub, and the service's
    *_pb2_grpc.py).
    """
    from grpc_tools import protoc  # imported here: only needed by developers, not at run time

    output_root.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {PROTO_FILES}")
    generated = []
    for proto in PROTO_FILES:
        stem = output_root / proto.removesuffix(".proto")
        pb2 = stem.with_name(stem.name + "_pb2.py")
        text = pb2.read_text()
        if text.count(DEFAULT_POOL_CALL) != 1:
            raise RuntimeError(f"{pb2}: expected one default-pool registration, protoc output changed")
        marker = "# @@protoc_insertion_point(imports)\n"
        text = text.replace(marker, marker + PRIVATE_POOL_IMPORT, 1)
        pb2.write_text(text.replace(DEFAULT_POOL_CALL, PRIVATE_POOL_CALL))
        generated.extend([pb2, pb2.with_suffix(".pyi")])
        grpc_module = stem.with_name(stem.name + "_pb2_grpc.py")
        if "service " in (PROTO_ROOT / proto).read_text():
            generated.append(grpc_module)
        else:
            grpc_module.unlink()  # protoc writes an empty stub module for files without services
    return generated


def main(argv: list[str]) -> int:
    output_root = Path(argv[1]) if len(argv) > 1 else PROTO_ROOT.parent
    for path in generate(output_root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
