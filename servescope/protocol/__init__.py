"""The KServe v2 / Open Inference Protocol messages and service, generated from proto/.

Import the generated modules from here:

    from servescope.protocol import grpc_service_pb2 as pb, grpc_service_pb2_grpc as pb_grpc
"""

from __future__ import annotations

from servescope.protocol import grpc_service_pb2, grpc_service_pb2_grpc, model_config_pb2
from servescope.protocol._pool import POOL

SERVICE_NAME = "inference.GRPCInferenceService"

__all__ = ["POOL", "SERVICE_NAME", "grpc_service_pb2", "grpc_service_pb2_grpc", "model_config_pb2"]
