"""What a SIGKILLed RabbitMQ filter worker costs under each delivery guarantee.

docs/PROTOCOL.md (RabbitMQ, Delivery guarantees): at least once, nothing is lost; at
most once, a killed worker loses the tasks the broker had sent it and it had not
answered (auto-ack ignores the prefetch, so that can be the whole backlog), and no task
is ever answered twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pika
import psutil
import pytest

from middlewares.launch.deployment import Deployment
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import require, wait_for

BACKEND = get_backend("rabbitmq")

#: Tasks queued before the kill; with WORK_MS each, the worker is still busy with them.
TASKS = 100
WORK_MS = 20
#: Results to see before the kill: the worker has started on the backlog.
ANSWERED_BEFORE_KILL = 5
#: Tasks sent after the kill; at most once, the restarted worker answers them after
#: whatever of the backlog was still queued (one worker takes a queue in order).
MARKERS = 10


@pytest.fixture(params=["at-least-once", "at-most-once"])
def guarantee(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    """Settings under each guarantee; the namespace is cleaned up afterwards."""
    chosen = settings.with_changes(guarantee=request.param, work_ms=WORK_MS)
    require(BACKEND, chosen)
    yield chosen
    BACKEND.cleanup(chosen)


def _queued(settings: Settings) -> int:
    """Tasks waiting in the task queue (not sent to any worker)."""
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        queue = f"{settings.namespace}.filter.tasks"
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def _worker(deployment: Deployment) -> int:
    (pid,) = [
        p
        for p in deployment.worker_pids()
        if "filter_worker" in " ".join(psutil.Process(p).cmdline())
    ]
    return pid


def test_a_killed_worker_loses_at_most_what_it_held_and_answers_nothing_twice(
    guarantee: Settings,
):
    settings = guarantee
    deployment = Deployment("rabbitmq", "filter", settings, workers=1)
    deployment.start()
    try:
        with BACKEND.filter_client(settings) as client:
            texts = [f"task {n} tonto" for n in range(TASKS)]
            ids = client.submit_many(texts)
            done: dict[str, str] = {}
            deadline = time.monotonic() + 30
            while len(done) < ANSWERED_BEFORE_KILL and time.monotonic() < deadline:
                done.update(client.wait([i for i in ids if i not in done], timeout=1.0))
            answered_before = len(done)
            victim = _worker(deployment)
            os.kill(victim, signal.SIGKILL)
            # What no worker was sent yet; the supervisor restarts the worker after this.
            still_queued = _queued(settings)
            assert wait_for(lambda: deployment.worker_pids() not in ([], [victim]), timeout=20)
            markers = client.submit_many([f"marker {n} feo" for n in range(MARKERS)])
            answered_markers: dict[str, str] = {}
            # At least once, the tasks the killed worker held come back through the retry
            # queue, beside the markers: wait for all. At most once nothing comes back.
            wanted = TASKS if settings.guarantee == "at-least-once" else 0
            deadline = time.monotonic() + 60
            while (len(answered_markers) < MARKERS or len(done) < wanted) and (
                time.monotonic() < deadline
            ):
                answered = client.wait([*markers, *(i for i in ids if i not in done)], 1.0)
                for task_id, text in answered.items():
                    (answered_markers if task_id in markers else done)[task_id] = text
            assert len(answered_markers) == MARKERS, "the restarted worker does not serve"
            # A task still on its way from the killed worker would be in by now: it was
            # published before the markers were.
            done.update(client.wait([i for i in ids if i not in done], timeout=0.5))
            listed = Counter(client.get_results(limit=settings.result_limit))
    finally:
        deployment.stop()

    assert all(done[i] == f"task {n} CENSORED" for n, i in enumerate(ids) if i in done)
    lost = [n for n, task_id in enumerate(ids) if task_id not in done]
    if settings.guarantee == "at-least-once":
        assert lost == [], f"{len(lost)} accepted tasks were lost"
        return
    # At most once: what the killed worker held is lost, and only that. The broker sends
    # in queue order, so the lost tasks are one run, after those answered before the kill.
    assert lost, "the worker held tasks when it was killed: at most once must lose them"
    assert lost == list(range(lost[0], lost[-1] + 1)), f"not one run: {lost}"
    held_at_most = TASKS - still_queued - answered_before
    assert len(lost) <= held_at_most, (len(lost), still_queued, answered_before)
    ours = {text: count for text, count in listed.items() if text.startswith(("task", "marker"))}
    assert max(ours.values()) == 1, "a task was answered twice"
    assert len(ours) == TASKS - len(lost) + MARKERS
