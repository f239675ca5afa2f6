"""Load generation for KServe v2 servers and load campaigns (`servescope load` / `campaign`).

The load itself comes from a load engine (engine.py; Locust by default, locust_engine.py). Locust
monkey-patches the process with gevent, so it always runs in its own subprocesses (loadtest/locustfile.py
and locust_users/, imported only there); everything else in this package is plain, gevent-free Python
that starts those subprocesses, reads the per-request samples they write, scrapes /metrics and writes
the campaign results (servescope.results).
"""
