"""The model repository on disk: Triton's layout plus servescope's metadata.json (docs/export.md).

    <repository>/<model>/config.pbtxt          ModelConfig in protobuf text format
    <repository>/<model>/<version>/model.onnx  version: a positive integer
    <repository>/<model>/metadata.json         precision, accuracy, size, FLOPs, provenance

The exporter writes it and the server reads it; this module is the one place that knows the layout.

The files are untrusted input: reads are bounded and must be UTF-8, model names are plain names, and
nothing may lead out of the repository: a model folder, file or version folder that is a symbolic link
to a place outside it, and a `default_model_filename` that is not a plain file name, are refused with the
path named (docs/server.md, Model repository). Links that stay inside the repository are followed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from servescope.echo import shown
from servescope.protocol import model_config_pb2
from servescope.textfile import FileTooLarge, read_bounded_utf8

CONFIG_FILE = "config.pbtxt"
METADATA_FILE = "metadata.json"
DEFAULT_MODEL_FILE = "model.onnx"
PLATFORM = "onnxruntime_onnx"
MAX_TEXT_FILE_BYTES = 1 << 20  # config.pbtxt and metadata.json are a few kB; anything above 1 MiB is refused
# A model name: what a folder, a metric label and a log line can all carry plainly (no leading dot, so
# neither hidden folders nor "..sneaky" are served).
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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
        if "/" in filename or "\\" in filename or "\0" in filename or filename in (".", ".."):
            raise RepositoryError(
                f"{self.path / CONFIG_FILE}: default_model_filename {shown(filename)} must be a plain file "
                "name inside the version folder"
            )
        path = self.path / str(chosen) / filename
        repository = self.path.parent.resolve()
        if path.exists() or path.is_symlink():
            check_inside(path, repository)
        return path


def check_inside(path: Path, repository: Path) -> None:
    """Refuse a path (a link, or below one) that resolves to a place outside the repository folder."""
    target = path.resolve()
    if not target.is_relative_to(repository):
        raise RepositoryError(
            f"{path}: leads to {shown(str(target))}, outside the model repository {repository}; refused "
            "(only links that stay inside the repository are followed)"
        )


def read_text_file(path: Path, what: str) -> str:
    """A small UTF-8 text file of the repository, bounded in size; RepositoryError naming it otherwise."""
    try:
        return read_bounded_utf8(path, MAX_TEXT_FILE_BYTES)
    except OSError as exc:
        raise RepositoryError(f"{path}: cannot read {what}: {exc.strerror}") from exc
    except FileTooLarge as exc:
        raise RepositoryError(f"{path}: {what} is larger than {MAX_TEXT_FILE_BYTES} bytes; refused") from exc
    except UnicodeDecodeError as exc:
        byte = shown(exc.object[exc.start : exc.start + 1])
        raise RepositoryError(
            f"{path}: {what} is not UTF-8 text (byte {byte} at offset {exc.start})"
        ) from exc


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt, naming the file and the problem when it does not parse."""
    text = read_text_file(path, "model configuration")
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except (text_format.ParseError, RecursionError) as exc:
        raise RepositoryError(f"{path}: not a valid ModelConfig: {shown(str(exc))}") from exc


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
    text = read_text_file(path, "model metadata")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RepositoryError(f"{path}: not valid JSON: {shown(str(exc))}") from exc
    if not isinstance(data, dict):
        raise RepositoryError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def write_metadata(metadata: dict[str, Any], model_dir: Path) -> None:
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def read_model(model_dir: Path) -> ModelEntry:
    """One model folder: its config (name must match the folder), metadata and numeric versions."""
    if not MODEL_NAME.fullmatch(model_dir.name):
        raise RepositoryError(
            f"{model_dir}: {shown(model_dir.name)} is not a model name (letters, digits, '_', '.', '-'; "
            "not starting with '.' or '-'); rename or remove the folder"
        )
    repository = model_dir.parent.resolve()
    for path in (model_dir, model_dir / CONFIG_FILE, model_dir / METADATA_FILE):
        if path.exists() or path.is_symlink():
            check_inside(path, repository)
    config = read_config(model_dir / CONFIG_FILE)
    if config.name and config.name != model_dir.name:
        raise RepositoryError(
            f"{model_dir / CONFIG_FILE}: name {config.name!r} differs from the folder name {model_dir.name!r}"
        )
    if not config.name:
        config.name = model_dir.name
    version_dirs = [p for p in model_dir.iterdir() if p.name.isdigit() and int(p.name) > 0 and p.is_dir()]
    for path in version_dirs:
        check_inside(path, repository)
    versions = tuple(sorted(int(p.name) for p in version_dirs))
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
