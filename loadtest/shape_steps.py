"""A Locust load shape: the user count rises in steps (closed-loop ramps of `servescope load --ramp-steps`).

Kept apart from locustfile.py because Locust uses any shape class it finds in a locustfile; the driver
adds this file (`-f locustfile.py,shape_steps.py`) only when it wants a ramp. The steps come from the
same --servescope-config JSON: "ramp": [{"until_s": t, "users": n, "rate_rps": r}, ...]. Open-loop
ramps do not need a shape: the open-loop user follows the rate of the current step itself.
"""

from __future__ import annotations

import json

from locust import LoadTestShape


class StepShape(LoadTestShape):
    abstract = False

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None  # Locust sets it before the first tick
        options = self.runner.environment.parsed_options
        assert options is not None
        config = json.loads(options.servescope_config)
        elapsed = self.get_run_time()
        for step in config.get("ramp") or []:
            if elapsed < step["until_s"]:
                users = int(step["users"])
                return users, float(users)
        return None
