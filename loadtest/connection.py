"""How the load client reaches a server: protocol (gRPC unary, gRPC streaming or KServe v2 REST), TLS,
model version and the headers (gRPC metadata) sent with every request.

One Connection serves the Locust users (locustfile.py), the driver's questions to the server
(server_info.py) and the transport probe (transport_probe.py), so all three reach the server the same
way. The locustfile initialises gevent for gRPC before importing this module.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc

PROTOCOLS = ("grpc", "http")


class ConnectionSettingsError(ValueError):
    """The connection settings cannot work; the message names the setting and its value."""


@dataclass(frozen=True)
class Connection:
    protocol: str = "grpc"  # "grpc" or "http" (KServe v2 REST)
    streaming: bool = False  # gRPC only: every user keeps one ModelStreamInfer stream
    tls_ca: str | None = None  # PEM file of the CA that signed the server's certificate: TLS on
    tls_cert: str | None = None  # PEM client certificate (mutual TLS), with tls_key
    tls_key: str | None = None
    model_version: str = ""  # "" : the version the server serves
    headers: dict[str, str] = field(default_factory=dict)  # HTTP headers, or gRPC metadata

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert)

    @property
    def transport(self) -> str:
        """The transport's name in results: "grpc", "grpc_stream" or "http"."""
        return "grpc_stream" if self.streaming else self.protocol

    def check(self) -> None:
        """Raise ConnectionSettingsError for settings that cannot work (before any load is sent)."""
        if self.protocol not in PROTOCOLS:
            raise ConnectionSettingsError(
                f"protocol {self.protocol!r}: must be one of {', '.join(PROTOCOLS)}"
            )
        if self.streaming and self.protocol != "grpc":
            raise ConnectionSettingsError("streaming needs protocol grpc (ModelStreamInfer is a gRPC call)")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConnectionSettingsError(
                "tls_cert and tls_key (the client certificate) must be given together"
            )
        for name in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConnectionSettingsError(f"{name} {path}: no such file")
        for key, value in self.headers.items():
            if not key or any(c in key for c in " :\r\n") or any(c in str(value) for c in "\r\n"):
                raise ConnectionSettingsError(
                    f"header {key!r}: {value!r} is not a valid header (NAME: VALUE)"
                )
            if self.protocol == "grpc" and key.lower().startswith("grpc-"):
                raise ConnectionSettingsError(
                    f"header {key!r}: gRPC reserves metadata keys starting with grpc-"
                )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The headers as gRPC metadata (keys lower case, as HTTP/2 requires)."""
        return tuple((key.lower(), str(value)) for key, value in self.headers.items())

    def grpc_channel(self, target: str, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
        """A (sync) channel to target: TLS when a CA or client certificate is set."""
        if not self.tls:
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, self.grpc_credentials(), options=options)

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.tls_ca),
            private_key=read(self.tls_key),
            certificate_chain=read(self.tls_cert),
        )

    def ssl_context(self, factory: Any = ssl.create_default_context) -> ssl.SSLContext | None:
        """For HTTPS: verifies the server with tls_ca (else the system's CAs), presents the client
        certificate when there is one. `factory` lets gevent pass its own ssl module's."""
        if not self.tls:
            return None
        context = factory(cafile=self.tls_ca) if self.tls_ca else factory()
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context

    def base_url(self, target: str) -> str:
        return f"{'https' if self.tls else 'http'}://{target}"

    def model_path(self, model: str) -> str:
        """/v2/models/{model}[/versions/{version}]"""
        path = f"/v2/models/{quote(model, safe='')}"
        return path + (f"/versions/{quote(self.model_version, safe='')}" if self.model_version else "")

    def to_config(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "streaming": self.streaming,
            "tls_ca": self.tls_ca,
            "tls_cert": self.tls_cert,
            "tls_key": self.tls_key,
            "model_version": self.model_version,
            "headers": dict(self.headers),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Connection:
        return cls(
            protocol=config.get("protocol") or "grpc",
            streaming=bool(config.get("streaming", False)),
            tls_ca=config.get("tls_ca"),
            tls_cert=config.get("tls_cert"),
            tls_key=config.get("tls_key"),
            model_version=str(config.get("model_version") or ""),
            headers=dict(config.get("headers") or {}),
        )


def parse_header(text: str) -> tuple[str, str]:
    """'Name: value' (as curl -H takes it) -> (name, value); raises ConnectionSettingsError."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ConnectionSettingsError(f"header {text!r}: expected NAME: VALUE")
    return name.strip(), value.strip()
