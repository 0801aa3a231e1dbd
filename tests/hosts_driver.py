"""The clients of the emulated-hosts tests (tests/integration/test_hosts.py), run on the clients'
emulated host: ``python -m <this module> '<json spec>'``.

It talks to the test on stdout, one line each: ``phase1`` once the first stream is
answered (then it waits for a line on stdin, while the test reads the per-node counters),
``kill`` a third of the way through the second stream (the test SIGKILLs a node then),
and last ``result <json>``: what was answered, lost, answered twice or wrong.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from middlewares.contract import MiddlewareError
from middlewares.registry import get_backend
from middlewares.settings import Settings

#: The README's example and its answer.
SAMPLE = "Eres TONTO, muy tonto y feo."
CENSORED_SAMPLE = "Eres CENSORED, muy CENSORED y CENSORED."

#: Longest a stream may take to be answered.
STREAM_TIMEOUT = 60.0


def say(line: str) -> None:
    """One line to the test."""
    print(line, flush=True)


def listening() -> list[str]:
    """The listening TCP addresses of this host (``ss -ltn``)."""
    output = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in output.splitlines() if line.strip()]


class Stream:
    """Counts what a stream answered, and says ``kill`` once past ``kill_at``."""

    def __init__(self, kill_at: int | None) -> None:
        self.done = 0
        self.errors: list[str] = []
        self._kill_at = kill_at
        self._lock = threading.Lock()

    def answered(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            if self._kill_at is not None and self.done >= self._kill_at:
                self._kill_at = None
                say("kill")

    def failed(self, error: Exception) -> None:
        with self._lock:
            self.errors.append(f"{type(error).__name__}: {error}")


def insult_checks(backend: Any, settings: Settings, token: str) -> dict[str, Any]:
    """Answers to each call, and one broadcast received through a subscriber's server."""
    received: queue.SimpleQueue[str] = queue.SimpleQueue()
    with backend.insult_client(settings) as client:
        added = client.add_insult(f"hosts check {token}")
        stored = client.get_insults()
        random = client.random_insult()
        client.subscribe(received.put)
        try:
            broadcast = received.get(timeout=4 * settings.broadcast_interval)
        except queue.Empty:
            broadcast = None
        subscribed_listening = listening()
        client.unsubscribe()
    return {
        "added": added,
        "stored": f"hosts check {token}" in stored,
        "random_known": random in stored,
        "broadcast": broadcast,
        "subscribed_listening": subscribed_listening,
    }


def insult_stream(
    backend: Any, settings: Settings, clients: int, calls: int, token: str, stream: Stream
) -> tuple[list[str], list[str]]:
    """``calls`` calls over ``clients`` threads, half adding new insults; returns the
    insults added and the random insults answered."""
    added: list[str] = []
    answers: list[str] = []
    lock = threading.Lock()

    def work(thread: int) -> None:
        try:
            client = backend.insult_client(settings)
        except MiddlewareError as error:
            stream.failed(error)
            return
        with client:
            for call in range(thread, calls, clients):
                insult = f"hosts {token} {call}"
                try:
                    if call % 2:
                        client.add_insult(insult)
                        with lock:
                            added.append(insult)
                    else:
                        answer = client.random_insult()
                        with lock:
                            answers.append(answer)
                    stream.answered()
                except MiddlewareError as error:
                    stream.failed(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STREAM_TIMEOUT)
    return added, answers


def run_insult(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    backend = get_backend(spec["middleware"])
    token = uuid.uuid4().hex[:8]
    result = insult_checks(backend, settings, token)
    warmup = Stream(None)
    insult_stream(backend, settings, spec["clients"], spec["phase1"], token + "a", warmup)
    say("phase1")
    sys.stdin.readline()
    stream = Stream(spec["phase2"] // 3)
    added, answers = insult_stream(
        backend, settings, spec["clients"], spec["phase2"], token + "b", stream
    )
    with backend.insult_client(settings) as client:
        stored = client.get_insults()
    known = set(stored)
    result.update(
        calls=spec["phase2"],
        answered=stream.done,
        errors=warmup.errors + stream.errors,
        missing=[insult for insult in added if insult not in known],
        stored_twice=len(stored) - len(known),
        unknown_answers=[answer for answer in answers if answer not in known],
    )
    return result


def filter_stream(
    client: Any, count: int, token: str, stream: Stream
) -> tuple[dict[str, str], list[str], int]:
    """Submit ``count`` texts at once and collect them; returns the texts answered
    wrong (by task id), the ids never answered, and how many were answered twice."""
    texts = [f"texto {token} {n}: eres tonto" for n in range(count)]
    ids = client.submit_many(texts)
    expected = {
        task: text.replace("tonto", "CENSORED") for task, text in zip(ids, texts, strict=True)
    }
    answered: dict[str, str] = {}
    twice = 0
    deadline = time.monotonic() + STREAM_TIMEOUT
    while len(answered) < count and time.monotonic() < deadline:
        pending = [task for task in ids if task not in answered]
        try:
            done = client.wait(pending, 1.0)
        except MiddlewareError as error:
            stream.failed(error)
            continue
        twice += sum(1 for task in done if task in answered)
        answered.update(done)
        stream.answered(len(done))
    wrong = {task: text for task, text in answered.items() if text != expected.get(task)}
    missing = [task for task in ids if task not in answered]
    return wrong, missing, twice


def run_filter(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    backend = get_backend(spec["middleware"])
    token = uuid.uuid4().hex[:8]
    with backend.filter_client(settings) as client:
        sample = client.filter(SAMPLE)
        warmup = Stream(None)
        filter_stream(client, spec["phase1"], token + "a", warmup)
        say("phase1")
        sys.stdin.readline()
        stream = Stream(spec["phase2"] // 3)
        wrong, missing, twice = filter_stream(client, spec["phase2"], token + "b", stream)
    return {
        "sample": sample == CENSORED_SAMPLE,
        "calls": spec["phase2"],
        "answered": stream.done,
        "errors": warmup.errors + stream.errors,
        "wrong": list(wrong.items())[:5],
        "missing": missing[:5],
        "missing_count": len(missing),
        "answered_twice": twice,
    }


RUNS: dict[str, Callable[[dict[str, Any], Settings], dict[str, Any]]] = {
    "insult": run_insult,
    "filter": run_filter,
}


def main() -> None:
    """Run the spec given as the one argument; print ``result <json>``."""
    spec = json.loads(sys.argv[1])
    settings = Settings(**spec["settings"])
    result = RUNS[spec["service"]](spec, settings)
    say("result " + json.dumps(result))


if __name__ == "__main__":
    main()
