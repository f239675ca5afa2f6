"""The Locust users' parts, imported only by loadtest/locustfile.py inside Locust's own processes (after
gevent is initialised for gRPC): the per-process state (process.py), one module per transport's client
(grpc.py unary gRPC, grpc_stream.py ModelStreamInfer, http.py KServe v2 REST) and the load modes
(loops.py: closed and open loop), which the locustfile combines."""
