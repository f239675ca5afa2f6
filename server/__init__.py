"""servescope's gRPC inference server: KServe v2 protocol over ONNX Runtime with dynamic batching.

Layers, from the wire inward: servicer (gRPC, thin) -> core (data plane: models, statistics) ->
batcher (dynamic batching) -> model (ONNX Runtime sessions). app.py runs the lifecycle and cli.py
parses the command line. Nothing heavy happens at import time.
"""
