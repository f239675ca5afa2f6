"""Locust load generation for KServe v2 gRPC servers and load campaigns (`servescope load` / `campaign`).

Locust monkey-patches the process with gevent, so it always runs in its own subprocess
(loadtest/locustfile.py); everything else in this package is plain, gevent-free Python that starts
those subprocesses, reads the per-request samples they write, scrapes /metrics and writes the campaign
results (servescope.results).
"""
