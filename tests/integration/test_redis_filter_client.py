"""The Redis filter client keeps a result that arrives after its first wait.

``RedisFilterClient.filter`` waits in slices of half its timeout; a result that came
after the first slice used to be taken by ``wait`` and then thrown away, so any task
slower than half the timeout timed out (a filter with ``work_ms`` of 1 s never passed
the launcher's 2 s readiness probe).
"""

from __future__ import annotations

import uuid

from middlewares.launch.deployment import Deployment
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import require


def test_a_result_slower_than_half_the_timeout_is_not_lost(settings: Settings):
    backend = get_backend("redis")
    require(backend, settings)
    slow = settings.with_changes(work_ms=1200.0, namespace=f"ibtest-{uuid.uuid4().hex[:10]}")
    try:
        with (
            Deployment("redis", "filter", slow),
            backend.filter_client(slow.with_changes(timeout=2.0)) as client,
        ):
            assert client.filter("eres tonto") == "eres CENSORED"
    finally:
        backend.cleanup(slow)
