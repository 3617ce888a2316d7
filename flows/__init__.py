"""Prefect flows and deployments; thin: they call ``engine`` and nothing else.

Importing the package sets two Prefect defaults before any flow module imports prefect (a
value the user set is kept):

* ``PREFECT_SERVER_ANALYTICS_ENABLED=false``: the local server would send a telemetry
  heartbeat (a network call this tool must not make, and on start-up it races the server's
  own SQLite writes: "database is locked");
* ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90``: the local ephemeral API starts in a
  subprocess that imports the server and migrates a fresh SQLite database; on a busy 2-core
  machine that took more than Prefect's default 20 s (a CI run failed so).
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
