"""servescope: serve ONNX models over KServe v2 gRPC, load them with Locust, find the bottleneck."""

from __future__ import annotations

__version__ = "0.1.0"
