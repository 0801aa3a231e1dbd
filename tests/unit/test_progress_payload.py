"""The live progress line of a run and ``--payload-words``, with the stub backend (no
broker, no network)."""

from __future__ import annotations

import functools
import io
import itertools
import random

import pytest

from middlewares.core import DEFAULT_LIMITS
from middlewares.registry import STUB, get_backend
from middlewares.settings import Settings
from stress import progress as progress_module
from stress.calibrate import no_deployment
from stress.cli import build_parser, workloads
from stress.loadgen import operation_stream
from stress.plan import RunPlan
from stress.progress import RunProgress
from stress.runner import isolated_settings, run_once
from stress.workload import (
    MAX_PAYLOAD_WORDS,
    Workload,
    add_pool,
    echo_payload,
    expected_censored,
)


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_is_plain_lines_with_ops_and_errors(monkeypatch):
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL_S", 0.0)
    log = io.StringIO()
    with RunProgress("redis insult clients=4 repeat=1", warmup=1.0, total=4.0, stream=log) as shown:
        shown.update(0.5, 4.0, 1200.0, 0)
        shown.update(2.0, 4.0, 2345.0, 3)
    lines = log.getvalue().splitlines()
    assert lines == [
        "  redis insult clients=4 repeat=1: 0/4 s, warm-up, 1,200 ops/s, 0 errors",
        "  redis insult clients=4 repeat=1: 2/4 s, measuring, 2,345 ops/s, 3 errors",
    ]
    assert "\r" not in log.getvalue()


def test_progress_in_a_log_waits_between_lines(monkeypatch):
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL_S", 3600.0)
    log = io.StringIO()
    with RunProgress("run", warmup=0.0, total=4.0, stream=log) as shown:
        for second in range(4):
            shown.update(float(second), 4.0, 100.0, 0)
    assert log.getvalue() == ""


def test_progress_on_a_terminal_rewrites_one_line():
    terminal = Terminal()
    with RunProgress("run", warmup=1.0, total=4.0, stream=terminal) as shown:
        shown.update(2.0, 4.0, 2345.0, 1)
    text = terminal.getvalue()
    assert "\r" in text and "measuring, 2,345 ops/s, 1 error" in text
    assert "\n  run:" not in text


def test_a_real_run_reports_its_progress_and_error_count():
    seen = []
    plan = RunPlan(STUB, Workload("echo"), clients=1, repeat=1, duration=0.6, warmup=0.2)
    settings = isolated_settings(Settings(), "progress-test")
    backend = functools.partial(get_backend, STUB)
    run_once(plan, settings, no_deployment, backend, lambda *call: seen.append(call))
    assert seen, "the run never called its progress callback"
    assert all(len(call) == 4 and call[3] == 0 for call in seen)
    assert max(call[2] for call in seen) > 0


@pytest.mark.parametrize("words", [1, 7, 200])
def test_payload_words_size_every_text(words):
    expected = expected_censored(words)
    assert expected and all(len(text.split()) == words for text in expected)
    assert len(echo_payload(words).split()) == words
    pool = add_pool(words)
    assert len(set(pool)) == len(pool) == 32
    assert all(len(insult) <= DEFAULT_LIMITS.max_insult_chars for insult in pool)


def test_the_largest_payload_fits_the_services_text_limit():
    for text in expected_censored(MAX_PAYLOAD_WORDS):
        assert len(text.encode()) <= DEFAULT_LIMITS.max_text_bytes
    with pytest.raises(ValueError, match="payload_words"):
        Workload("filter", payload_words=MAX_PAYLOAD_WORDS + 1)


def test_payload_words_reach_the_workloads_and_are_checked_on_the_command_line(capsys):
    parser = build_parser()
    args = parser.parse_args(["--service", "all", "--baseline", "--payload-words", "40"])
    assert {w.payload_words for w in workloads(args)} == {40}
    from stress.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--payload-words", str(MAX_PAYLOAD_WORDS + 1)])
    assert exit_info.value.code == 2
    assert "--payload-words must be between 0" in capsys.readouterr().err


@pytest.mark.parametrize("service", ["filter", "echo", "insult"])
def test_large_payloads_get_right_replies_from_the_stub(service):
    backend = get_backend(STUB)
    workload = Workload(service, payload_words=300)
    opened = {
        "filter": backend.filter_client,
        "echo": backend.echo_client,
        "insult": backend.insult_client,
    }[service](Settings())
    with opened as client:
        stream = operation_stream(workload, client, random.Random(1))
        assert all(operation() for operation in itertools.islice(stream, 50))


def test_a_run_records_its_payload_words():
    plan = RunPlan(
        STUB, Workload("filter", payload_words=25), clients=1, repeat=1, duration=0.3, warmup=0.1
    )
    settings = isolated_settings(Settings(), "payload-test")
    row = run_once(plan, settings, no_deployment, functools.partial(get_backend, STUB)).row
    assert row["payload_words"] == 25 and row["completed"] > 0 and row["errors"] == 0
