"""The model repository on disk: Triton's layout plus servescope's metadata.json (DESIGN.md).

    <repository>/<model>/config.pbtxt          ModelConfig in protobuf text format
    <repository>/<model>/<version>/model.onnx  version: a positive integer
    <repository>/<model>/metadata.json         precision, accuracy, size, FLOPs, provenance

The exporter writes it and the server reads it; this module is the one place that knows the layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from servescope.protocol import model_config_pb2

CONFIG_FILE = "config.pbtxt"
METADATA_FILE = "metadata.json"
DEFAULT_MODEL_FILE = "model.onnx"
PLATFORM = "onnxruntime_onnx"


class RepositoryError(ValueError):
    """The repository, or one model in it, is missing or malformed; the message names the path."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of a repository: its configuration, metadata and version folders."""

    name: str
    path: Path
    config: model_config_pb2.ModelConfig
    metadata: dict[str, Any]
    versions: tuple[int, ...] = field(default=())

    def model_file(self, version: int | None = None) -> Path:
        """The ONNX file of a version (the highest when version is None)."""
        if not self.versions:
            raise RepositoryError(f"{self.path}: model {self.name!r} has no version folder")
        chosen = max(self.versions) if version is None else version
        if chosen not in self.versions:
            raise RepositoryError(
                f"{self.path}: model {self.name!r} has no version {chosen} (has {list(self.versions)})"
            )
        filename = self.config.default_model_filename or DEFAULT_MODEL_FILE
        return self.path / str(chosen) / filename


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt, naming the file and the problem when it does not parse."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RepositoryError(f"{path}: cannot read model configuration: {exc.strerror}") from exc
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise RepositoryError(f"{path}: not a valid ModelConfig: {exc}") from exc


def format_config(config: model_config_pb2.ModelConfig) -> str:
    """The protobuf text of a ModelConfig, as written to config.pbtxt."""
    return text_format.MessageToString(config)


def write_config(config: model_config_pb2.ModelConfig, path: Path) -> None:
    path.write_text(format_config(config))


def read_metadata(model_dir: Path) -> dict[str, Any]:
    """metadata.json of a model folder, or {} when the model came from elsewhere (it is optional)."""
    path = model_dir / METADATA_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RepositoryError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RepositoryError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def write_metadata(metadata: dict[str, Any], model_dir: Path) -> None:
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def read_model(model_dir: Path) -> ModelEntry:
    """One model folder: its config (name must match the folder), metadata and numeric versions."""
    config = read_config(model_dir / CONFIG_FILE)
    if config.name and config.name != model_dir.name:
        raise RepositoryError(
            f"{model_dir / CONFIG_FILE}: name {config.name!r} differs from the folder name {model_dir.name!r}"
        )
    if not config.name:
        config.name = model_dir.name
    versions = tuple(
        sorted(
            int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0
        )
    )
    return ModelEntry(
        name=model_dir.name,
        path=model_dir,
        config=config,
        metadata=read_metadata(model_dir),
        versions=versions,
    )


def list_models(repository: Path) -> list[ModelEntry]:
    """Every model folder (one holding a config.pbtxt) of a repository, sorted by name."""
    if not repository.is_dir():
        raise RepositoryError(f"{repository}: model repository not found (no such folder)")
    entries = [read_model(p) for p in sorted(repository.iterdir()) if (p / CONFIG_FILE).is_file()]
    if not entries:
        raise RepositoryError(f"{repository}: no model folders with a {CONFIG_FILE} in this repository")
    return entries
