"""Issue 13, items 1-9: each command as a newcomer meets it, run with ``python -m``.

Every failure must come within 10 s, before anything is measured, as one line on stderr
with exit status 2 (usage, or a broker or server that does not answer).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from middlewares.launch.deployment import Deployment
from middlewares.registry import get_backend
from middlewares.settings import Settings
from tests.helpers import (
    DEAD_REDIS,
    FAIL_FAST,
    ROOT,
    free_port,
    keys_of,
    new_namespace,
    one_error_line,
    run,
)

# 1. join that cannot join -------------------------------------------------------------


@pytest.mark.parametrize(
    ("middleware", "service", "what"),
    [
        ("xmlrpc", "filter", "filter"),
        ("xmlrpc", "insult", "master"),
        ("pyro", "filter", "name server"),
        ("pyro", "insult", "name server"),
    ],
)
def test_join_with_nothing_to_join_fails_at_once(middleware: str, service: str, what: str):
    namespace = new_namespace()
    ports = ["--insult-port", str(free_port()), "--filter-port", str(free_port())]
    started = time.monotonic()
    result = run(
        "middlewares", "join", middleware, service, "--namespace", namespace,
        "--pyro-ns-port", str(free_port()), *ports,
    )  # fmt: skip
    line = one_error_line(result)
    assert time.monotonic() - started < FAIL_FAST
    assert "cannot reach" in line and what in line
    assert keys_of(namespace) == [], "a node that never joined wrote to Redis"


# 2. speedup with Redis down ------------------------------------------------------------


def test_speedup_with_redis_down_stops_before_measuring(tmp_path: Path):
    result = run(
        "speedup", "--middleware", "all", "--redis-url", DEAD_REDIS, "--duration", "1",
        "--repeat", "1", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    line = one_error_line(result)
    assert "127.0.0.1:6399" in line and "no middleware can run" in line
    assert not list(tmp_path.rglob("speedup.csv")), "nothing may be measured"


def test_a_failed_launch_says_why_on_its_first_line():
    """A run's one-line FAILED summary keeps the launcher's reason, not a cut-off."""
    namespace = new_namespace()
    settings = Settings.from_env().with_changes(namespace=namespace, redis_url=DEAD_REDIS)
    deployment = Deployment("redis", "insult", settings, ready_timeout=FAIL_FAST)
    with pytest.raises(RuntimeError) as raised:
        deployment.start()
    first = str(raised.value).splitlines()[0]
    assert first.startswith("launcher exited early: ")
    assert "cannot reach redis://127.0.0.1:6399/0" in first


# 3. one line instead of a traceback -----------------------------------------------------


@pytest.mark.parametrize("command", [("stress",), ("speedup",)])
def test_a_study_refuses_an_out_it_cannot_write(command: tuple[str, ...], tmp_path: Path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, words in ((a_file, "is a file"), (Path("/proc/insultbench/x"), "cannot write")):
        result = run(*command, "--middleware", "redis", "--duration", "1", "--out", str(out))
        line = one_error_line(result)
        assert "--out" in line and words in line


def test_testmaster_refuses_an_out_it_cannot_write_before_running_the_profile(tmp_path: Path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    started = time.monotonic()
    line = one_error_line(run("dynamic.TestMaster", "--out", str(a_file)))
    assert "is a file" in line
    assert time.monotonic() - started < FAIL_FAST


@pytest.mark.parametrize(
    "flags", [("--port", "99999"), ("--insult-port", "99999"), ("--port", "http")]
)
def test_serve_refuses_a_port_that_is_not_one(flags: tuple[str, ...]):
    line = one_error_line(run("middlewares", "serve", "xmlrpc", "insult", *flags))
    assert "port" in line and flags[1] in line


# 4. the shipped example results are not overwritten ------------------------------------


def test_simulate_writes_under_results_runs_by_default(tmp_path: Path):
    result = run("dynamic.simulate", "--profile", "100:2", "--worker-rate", "50",
                 cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert len(written) == 2
    assert all(re.fullmatch(r"results/runs/simulated-\w+/simulated\.(csv|png)", p)
               for p in written), written  # fmt: skip


def test_testmaster_writes_under_results_runs_by_default(tmp_path: Path):
    result = run(
        "dynamic.TestMaster", "--profile", "10:1,0:1", "--work-ms", "5", "--calibration",
        "0.5", "--max", "2", "--drain-timeout", "10", cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "results" / "runs").glob("dynamic-*"))
    assert len(runs) == 1
    assert {p.name for p in runs[0].iterdir()} == {"dynamic.csv", "dynamic.json", "dynamic.png"}
    assert not (tmp_path / "results" / "dynamic.csv").exists()


# 5. check tells what really answers -----------------------------------------------------


def test_check_says_no_direct_server_runs_and_takes_the_url_flags():
    namespace = new_namespace()
    ports = ["--insult-port", str(free_port()), "--filter-port", str(free_port()),
             "--echo-port", str(free_port()), "--pyro-ns-port", str(free_port())]  # fmt: skip
    result = run("middlewares", "check", "--namespace", namespace, *ports)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    for direct in ("xmlrpc", "pyro"):
        assert "answers" not in lines[direct] and "nothing at" in lines[direct]
    result = run("middlewares", "check", "--namespace", namespace, "--redis-url", DEAD_REDIS)
    assert result.returncode == 2
    assert "cannot reach redis://127.0.0.1:6399/0" in result.stdout


# 7. help texts --------------------------------------------------------------------------


def help_of(*command: str) -> str:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def test_help_has_no_sphinx_markup_and_no_flags_that_do_nothing():
    assert ":class:" not in help_of("dynamic.simulate")
    assert "``" not in help_of("dynamic.simulate")
    for command in ("dynamic.Main", "dynamic.TestMaster"):
        text = help_of(command)
        for flag in ("--insult-port", "--echo-port", "--pyro-ns-port", "--broadcast-interval"):
            assert flag not in text, (command, flag)
    assert "only with --external-nodes" in help_of("speedup")


def test_help_shows_the_defaults_a_command_really_uses():
    testmaster = help_of("dynamic.TestMaster")
    assert re.search(r"--work-ms WORK_MS .*\(default: 50\)", testmaster)
    assert "(default: a fresh one" in testmaster
    assert "(default: insultbench)" not in testmaster
    assert "results/runs/" in testmaster
    assert "seconds measured per run (default: 10)" in help_of("stress")
    assert "must include 1 (default: 1,2,3)" in help_of("speedup")
    assert "--work-kind {sleep,cpu}" in help_of("dynamic.Main")


def test_positional_arguments_are_described():
    serve = help_of("middlewares", "serve")
    assert "the middleware to run it on" in serve and "InsultService, InsultFilter" in serve
    assert "the service to add a node to" in help_of("middlewares", "join")


def test_a_bad_boolean_says_what_is_expected():
    result = run("middlewares", "serve", "redis", "insult", "--load-defaults", "maybe")
    line = one_error_line(result)
    assert "expected true or false" in line and "maybe" in line
    assert "_parse_bool" not in line


# 8. one exit status for an unreachable broker --------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("stress", "--middleware", "redis"),
        ("speedup", "--middleware", "rabbitmq"),
        ("middlewares", "serve", "redis", "insult"),
        ("middlewares", "call", "redis", "random_insult"),
        ("middlewares", "watch", "redis"),
        ("dynamic.Main",),
        ("dynamic.TestMaster",),
    ],
)
def test_an_unreachable_broker_gives_status_2_everywhere(command: tuple[str, ...]):
    line = one_error_line(run(*command, "--redis-url", DEAD_REDIS, "--amqp-url",
                              f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"))  # fmt: skip
    assert "cannot reach" in line


# 9. the README's Python example honours the environment --------------------------------


def test_the_readme_example_reads_the_environment():
    readme = (ROOT / "README.md").read_text("utf-8")
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = new_namespace()
    settings = Settings.from_env().with_changes(namespace=namespace)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "INSULTBENCH_NAMESPACE": namespace,
                   "INSULTBENCH_TIMEOUT": "5"}  # fmt: skip
    try:
        with Deployment("rabbitmq", "filter", settings):
            result = subprocess.run(
                [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=30,
                cwd=ROOT, env=environment, check=False,
            )  # fmt: skip
    finally:
        get_backend("rabbitmq").cleanup(settings)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Eres CENSORED, muy CENSORED y CENSORED."
