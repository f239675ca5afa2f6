"""servescope's inference server: the KServe v2 protocol (gRPC and REST) over ONNX Runtime with dynamic
batching.

Layers, from the wire inward: the front ends behind one seam (frontend.py: grpc_frontend.py with the thin
servicer.py, rest.py, http.py for metrics), whose FrontDoor applies admission.py, restricted.py and the
error map of errors.py -> the data plane (dataplane.py: models, statistics) -> batcher.py (dynamic
batching) -> model.py (ONNX Runtime sessions). app.py runs one worker's lifecycle, supervisor.py and
worker.py several worker processes, cli.py parses the command line. Nothing heavy happens at import time.
"""
