"""``inferhub worker``: the job worker alone (no HTTP API), for deployments that scale jobs apart.

It honours ``INFERHUB_LOCAL_MODELS`` as ``serve`` does: a job for the embedded model needs the model in
the process that runs it, so a worker beside API replicas that serve the embedded models runs them too;
where engines serve every model, set ``INFERHUB_LOCAL_MODELS=false`` (as the shipped units do).
With ``INFERHUB_WORKER_HEALTH_PORT`` it answers probes and serves its metrics (``worker_health``).
"""

from __future__ import annotations

import asyncio
import sys

from inferhub.runtime.embedded_postgres import StartupError
from inferhub.settings import Settings


def run_worker(settings: Settings) -> int:
    from inferhub.server import serve

    if not settings.database_url:
        print("inferhub: `inferhub worker` needs INFERHUB_DATABASE_URL (the database `serve` uses)", file=sys.stderr)
        return 1
    settings = settings.model_copy(update={"run_job_worker": True})
    try:
        asyncio.run(serve(settings, None))
    except StartupError as exc:
        print(f"inferhub: {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    return 0
