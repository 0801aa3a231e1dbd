"""The contract suite: one body per behaviour, run against every middleware.

Each test starts the services through the launcher, as a user would, in a namespace of
its own, and talks to them only through the clients of :mod:`middlewares.contract`.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import psutil
import pytest

from middlewares.contract import Backend, ServiceError
from middlewares.core import load_default_insults
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import Deploy, adds_a_new_insult, wait_for


def test_insults_are_a_set_compared_without_case(backend: Backend, deploy: Deploy, settings):
    deploy("insult", load_defaults=False)
    with backend.insult_client(settings) as client:
        assert client.get_insults() == []
        assert client.random_insult() == ""
        assert client.add_insult("Zopenco") is True
        assert client.add_insult("  zopenco ") is False
        assert client.add_insult("ZOPENCO") is False
        assert client.add_insult("cara de   pan") is True
        assert sorted(client.get_insults()) == ["cara de pan", "zopenco"]
        assert {client.random_insult() for _ in range(30)} <= {"zopenco", "cara de pan"}


def test_default_insults_are_loaded_at_start(backend: Backend, deploy: Deploy, settings):
    deploy("insult")
    with backend.insult_client(settings) as client:
        assert set(client.get_insults()) == set(load_default_insults())
        assert client.random_insult() in load_default_insults()


def _add_all(middleware: str, settings: Settings, insults: list[str]) -> int:
    with get_backend(middleware).insult_client(settings) as client:
        return sum(client.add_insult(insult) for insult in insults)


def test_concurrent_adds_produce_no_duplicates(middleware: str, deploy: Deploy, settings):
    deploy("insult", load_defaults=False)
    insults = [f"insult number {n}" for n in range(60)]
    # Eight client processes add the same insults, each in its own order.
    orders = [insults[k::3] + insults[:k:3] + insults[::-1] for k in range(8)]
    with ProcessPoolExecutor(8) as pool:
        added = list(pool.map(_add_all, [middleware] * 8, [settings] * 8, orders))
    assert sum(added) == len(insults), "each insult must be reported new exactly once"
    with get_backend(middleware).insult_client(settings) as client:
        stored = client.get_insults()
    assert sorted(stored) == sorted(insults)


def test_subscriber_receives_broadcasts_at_the_interval(backend: Backend, deploy: Deploy, settings):
    interval = 0.5
    deploy("insult", broadcast_interval=interval)
    received: list[tuple[float, str]] = []
    with backend.insult_client(settings) as client:
        client.subscribe(lambda insult: received.append((time.monotonic(), insult)))
        # Counted, not timed: six broadcasts, however slow a loaded machine makes them.
        assert wait_for(lambda: len(received) >= 6, timeout=60 * interval)
        client.unsubscribe()
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(received)]
    # Broadcasts are paced by the interval, not sent as fast as possible: delivery can
    # bunch two, so the typical gap is bounded loosely from below only.
    assert statistics.median(gaps) >= 0.5 * interval, gaps
    assert {insult for _, insult in received} <= set(load_default_insults())


def test_empty_store_broadcasts_nothing_and_later_insults_are_broadcast(
    backend: Backend, deploy: Deploy, settings
):
    deploy("insult", broadcast_interval=0.3, load_defaults=False)
    received: list[str] = []
    with backend.insult_client(settings) as client:
        client.subscribe(received.append)
        time.sleep(1.0)  # several intervals with an empty store: nothing may arrive
        assert received == []
        client.add_insult("Pelmazo")
        assert wait_for(lambda: "pelmazo" in received, timeout=3.0)
        client.unsubscribe()


def test_a_silent_subscriber_does_not_block_the_others(backend: Backend, deploy: Deploy, settings):
    deploy("insult", broadcast_interval=0.3)
    received: list[str] = []
    with backend.insult_client(settings) as quitter, backend.insult_client(settings) as stayer:
        quitter.subscribe(lambda insult: None)
        stayer.subscribe(received.append)
        quitter.close()  # goes away without unsubscribing
        assert wait_for(lambda: len(received) >= 6, timeout=5.0)
        assert stayer.add_insult("still served") is True


CENSOR_CASES = [
    ("Eres TONTO, muy tonto y feo.", "Eres CENSORED, muy CENSORED y CENSORED."),
    ("tontorron y feote", "tontorron y feote"),
    ("¡Qué melón, Ñandú! 🙂 bobo🙂", "¡Qué CENSORED, Ñandú! 🙂 CENSORED🙂"),
    ("  spacing\tkept,  FOOL!  ", "  spacing\tkept,  CENSORED!  "),
]


def test_filter_censors_whole_words_in_any_case(backend: Backend, deploy: Deploy, settings):
    deploy("filter")
    with backend.filter_client(settings) as client:
        for text, expected in CENSOR_CASES:
            assert client.filter(text) == expected


def test_filter_follows_the_insult_service(backend: Backend, deploy: Deploy, settings):
    deploy("insult")
    deploy("filter")
    with backend.insult_client(settings) as insults, backend.filter_client(settings) as filt:
        assert filt.filter("un zascandil") == "un zascandil"
        insults.add_insult("Zascandil")
        assert wait_for(lambda: filt.filter("un zascandil") == "un CENSORED", timeout=10.0)


def test_submit_many_then_wait_and_read_results(backend: Backend, deploy: Deploy, settings):
    deploy("filter", result_limit=5)
    texts = [f"text {n} is feo" for n in range(12)]
    with backend.filter_client(settings) as client:
        ids = client.submit_many(texts)
        assert len(set(ids)) == len(texts)
        done: dict[str, str] = {}
        deadline = time.monotonic() + 20
        while len(done) < len(ids) and time.monotonic() < deadline:
            done.update(client.wait([i for i in ids if i not in done], timeout=1.0))
        assert [done[i] for i in ids] == [f"text {n} is CENSORED" for n in range(12)]
        assert client.result(ids[0]) is None, "a result is handed out once"
        newest = client.get_results(100)
        assert len(newest) == 5
        assert set(newest) <= set(done.values())
        assert client.get_results(2) == newest[:2]


def test_single_result_is_pending_then_ready(backend: Backend, deploy: Deploy, settings):
    deploy("filter")
    with backend.filter_client(settings) as client:
        task_id = client.submit("ready, fool?")
        assert wait_for(lambda: (r := client.result(task_id)) is not None and r, timeout=10)


BAD_INSULTS = ["", "   ", "x" * 65, 42, None, ["tonto"]]


@pytest.mark.parametrize("bad", BAD_INSULTS, ids=repr)
def test_bad_insults_are_refused_and_service_still_serves(
    backend: Backend, insult_settings: Settings, bad
):
    with backend.insult_client(insult_settings) as client:
        with pytest.raises(ServiceError, match="insult"):
            client.add_insult(bad)
        assert adds_a_new_insult(client)


@pytest.mark.parametrize("bad", ["", "x" * 2049, 7, None], ids=lambda b: repr(b)[:12])
def test_bad_texts_are_refused_and_filter_still_serves(
    backend: Backend, filter_settings: Settings, bad
):
    with backend.filter_client(filter_settings) as client:
        with pytest.raises(ServiceError, match="text"):
            client.filter(bad)
        assert client.filter("still feo") == "still CENSORED"


@pytest.mark.slow
def test_sigkilled_worker_loses_no_accepted_task(backend: Backend, deploy: Deploy, settings):
    deployment = deploy("filter", workers=2)
    total = 2000
    texts = [f"task {n} tonto" for n in range(total)]
    with backend.filter_client(settings) as client:
        ids: list[str] = []
        killer = threading.Timer(0.3, _kill_one_worker, [deployment.worker_pids()])
        killer.start()
        for start in range(0, total, 100):
            ids += client.submit_many(texts[start : start + 100])
        killer.join()
        done: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(done) < total and time.monotonic() < deadline:
            done.update(client.wait([i for i in ids if i not in done], timeout=1.0))
    assert len(set(ids)) == total
    assert len(done) == total, f"{total - len(done)} accepted tasks were lost"
    assert [done[i] for i in ids] == [f"task {n} CENSORED" for n in range(total)]


def _kill_one_worker(pids: list[int]) -> None:
    # Every backend runs its workers as ``python -m middlewares.<name>.filter_worker``.
    workers = [p for p in pids if "filter_worker" in " ".join(psutil.Process(p).cmdline())]
    os.kill(workers[0], signal.SIGKILL)
