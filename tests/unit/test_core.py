"""The domain core and the shared service logic, without any middleware."""

from __future__ import annotations

import json
import threading
import time

import pytest

from middlewares.broadcast import Broadcaster, SubscriberSet
from middlewares.core import (
    CENSORED,
    Censor,
    InsultError,
    InsultStore,
    Limits,
    ResultLog,
    canonical_insult,
    censor,
    load_default_insults,
    validate_limit,
    validate_text,
)
from middlewares.service import (
    InsultService,
    RefreshingInsults,
    decode_request,
    simulate_work,
)
from middlewares.settings import Settings
from tests.helpers import wait_for

INSULTS = {"tonto", "feo"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Eres TONTO, muy tonto y feo.", "Eres CENSORED, muy CENSORED y CENSORED."),
        ("tontorron", "tontorron"),
        ("atonto feos Feo", "atonto feos CENSORED"),
        ("tonto_feo tonto-feo", "tonto_feo CENSORED-CENSORED"),
        ("«Tonto»\n\tfeo!!", "«CENSORED»\n\tCENSORED!!"),
        ("emoji🙂tonto🙂", "emoji🙂CENSORED🙂"),
        ("", ""),
    ],
)
def test_censor_replaces_whole_words_in_any_case(text: str, expected: str) -> None:
    assert censor(text, INSULTS) == expected


def test_censor_handles_accents_phrases_and_regex_characters() -> None:
    insults = {"melón", "cara de pan", "c++", "big fool", "fool"}
    assert censor("MELÓN y melones", insults) == "CENSORED y melones"
    assert censor("eres cara  de\tpan", insults) == "eres CENSORED"
    assert censor("c++ and c+", insults) == "CENSORED and c+"
    assert censor("a big fool, a fool", insults) == f"a {CENSORED}, a {CENSORED}"


def test_censor_with_no_insults_returns_the_text() -> None:
    assert censor("tonto", []) == "tonto"


def test_censor_recompiles_when_the_insult_set_changes() -> None:
    censor_ = Censor()
    assert censor_.censor("tonto zopenco", {"tonto"}) == "CENSORED zopenco"
    assert censor_.censor("tonto zopenco", {"tonto", "zopenco"}) == "CENSORED CENSORED"


def test_canonical_insult_strips_folds_and_lowercases() -> None:
    assert canonical_insult("  Cara   de\tPAN ") == "cara de pan"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "insult is empty"),
        ("  \t", "insult is empty"),
        ("x" * 65, "insult is 65 characters long, over the limit of 64"),
        (3, "insult must be a string, got int"),
        (None, "insult must be a string, got NoneType"),
    ],
)
def test_bad_insults_raise_a_domain_error_naming_the_problem(value: object, message: str) -> None:
    with pytest.raises(InsultError, match=message):
        canonical_insult(value)


def test_an_insult_of_exactly_64_characters_is_accepted() -> None:
    assert canonical_insult("y" * 64) == "y" * 64


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "text is empty"),
        (b"bytes", "text must be a string, got bytes"),
        ("ñ" * 6, "text is 12 bytes of UTF-8, over the limit of 10"),
        ("\ud800", "text is not valid Unicode"),
    ],
)
def test_bad_texts_raise_a_domain_error(value: object, message: str) -> None:
    with pytest.raises(InsultError, match=message):
        validate_text(value, Limits(max_text_bytes=10))


def test_a_text_at_the_byte_limit_is_accepted() -> None:
    assert validate_text("ñ" * 5, Limits(max_text_bytes=10)) == "ñ" * 5


@pytest.mark.parametrize("value", [-1, 11, "3", True, 2.0])
def test_bad_limits_are_refused(value: object) -> None:
    with pytest.raises(InsultError, match="limit"):
        validate_limit(value, 10)


def test_store_is_a_set_and_add_says_whether_it_was_new() -> None:
    store = InsultStore(["tonto"])
    assert store.add("TONTO ") is False
    assert store.add("Feo") is True
    assert store.all() == ["tonto", "feo"]
    assert store.random() in {"tonto", "feo"}
    assert len(store) == 2
    assert InsultStore().random() == ""


def test_store_adds_from_many_threads_without_duplicates() -> None:
    store = InsultStore()
    added: list[bool] = []

    def add_all() -> None:
        added.extend(store.add(f"insult {n}") for n in range(200))

    threads = [threading.Thread(target=add_all) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(added) == 200
    assert len(store) == 200


def test_default_insults_ship_in_canonical_form() -> None:
    defaults = load_default_insults()
    assert "tonto" in defaults and "feo" in defaults
    assert len(defaults) == len(set(defaults))
    assert all(insult == canonical_insult(insult) for insult in defaults)


def test_result_log_keeps_the_newest_first_and_is_bounded() -> None:
    log = ResultLog(3)
    for n in range(5):
        log.append(f"r{n}")
    assert log.newest(10) == ["r4", "r3", "r2"]
    assert log.newest(1) == ["r4"]
    assert log.newest(0) == []


def test_decode_request_names_what_is_wrong() -> None:
    with pytest.raises(InsultError, match="not valid JSON"):
        decode_request(b"{nope")
    with pytest.raises(InsultError, match="must be a JSON object"):
        decode_request(b"[1]")
    assert decode_request(b'{"op": "x"}') == {"op": "x"}


def test_the_insult_service_runs_operations_and_refuses_bad_ones() -> None:
    service = InsultService(InsultStore(), Settings())
    assert service.apply(service.parse("add_insult", ["Feo"])) is True
    assert service.apply(service.parse("get_insults", [])) == ["feo"]
    assert service.apply(service.parse("random_insult", [])) == "feo"
    with pytest.raises(InsultError, match="unknown op 'drop'"):
        service.parse("drop", [])
    with pytest.raises(InsultError, match="args must be a JSON array"):
        service.parse("add_insult", "feo")
    with pytest.raises(InsultError, match="takes 1 argument"):
        service.parse("add_insult", [])
    with pytest.raises(InsultError, match="insult must be a string"):
        service.parse("add_insult", [5])


def test_the_insult_service_answers_json_and_never_raises_on_a_bad_request() -> None:
    service = InsultService(InsultStore(), Settings())
    assert json.loads(service.dispatch(b'{"op": "add_insult", "args": ["Feo"]}')) == {
        "ok": True,
        "result": True,
    }
    assert json.loads(service.dispatch(b'{"op": "get_insults"}'))["result"] == ["feo"]
    for body in (b"{nope", b"[1]", b'{"op": "drop"}', b'{"op": "add_insult", "args": [5]}'):
        reply = json.loads(service.dispatch(body))
        assert reply["ok"] is False and reply["error"]


def test_broadcaster_sends_on_schedule_and_skips_an_empty_store() -> None:
    sent: list[str] = []
    picks = iter(["", "tonto", "feo"] + ["feo"] * 100)
    broadcaster = Broadcaster(0.05, lambda: next(picks), sent.append)
    broadcaster.start()
    deadline = time.monotonic() + 5
    while len(sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    broadcaster.stop()
    broadcaster.join(1)
    assert sent[:2] == ["tonto", "feo"]


def test_broadcaster_survives_a_failing_send() -> None:
    calls: list[str] = []

    def send(insult: str) -> None:
        calls.append(insult)
        if len(calls) == 1:
            raise ConnectionError("subscriber gone")

    broadcaster = Broadcaster(0.02, lambda: "tonto", send)
    broadcaster.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    broadcaster.stop()
    assert len(calls) >= 3


def test_subscriber_set_drops_a_failing_subscriber_and_keeps_the_others() -> None:
    delivered: list[tuple[str, str]] = []

    def notify(address: object, insult: str) -> None:
        if address == "dead":
            raise ConnectionRefusedError("gone")
        delivered.append((str(address), insult))

    subscribers = SubscriberSet(notify, max_failures=3)
    assert subscribers.add("alive") and subscribers.add("dead")
    assert subscribers.add("alive") is False
    for _ in range(3):
        subscribers.broadcast("tonto")
    assert subscribers.addresses() == ["alive"]
    assert delivered == [("alive", "tonto")] * 3
    assert subscribers.remove("alive") is True
    assert subscribers.remove("alive") is False
    subscribers.close()


def test_subscriber_set_does_not_wait_for_a_hanging_subscriber() -> None:
    release = threading.Event()
    delivered: list[str] = []

    def notify(address: object, insult: str) -> None:
        if address == "slow":
            release.wait(5)
        else:
            delivered.append(insult)

    subscribers = SubscriberSet(notify, round_timeout=0.1)
    subscribers.add("slow")
    subscribers.add("fast")
    started = time.monotonic()
    subscribers.broadcast("a")
    subscribers.broadcast("b")
    assert time.monotonic() - started < 1.0
    assert delivered == ["a", "b"]
    release.set()
    subscribers.close()


def test_refreshing_insults_uses_defaults_without_a_service_and_caches() -> None:
    fetched: list[int] = []
    answers: list[list[str] | None] = [None, ["zopenco"]]

    def fetch() -> list[str] | None:
        fetched.append(1)
        return answers[min(len(fetched), len(answers)) - 1]

    insults = RefreshingInsults(fetch, interval=0.05)
    assert insults.current() == load_default_insults()
    assert insults.current() == load_default_insults()
    assert len(fetched) == 1, "no fetch per call within the interval"
    assert wait_for(lambda: insults.current() == ["zopenco"], 5), "fetched after the interval"


def test_refreshing_insults_keeps_the_last_list_when_a_fetch_fails() -> None:
    calls: list[int] = []

    def fetch() -> list[str] | None:
        calls.append(1)
        if len(calls) > 1:
            raise ConnectionError("service restarting")
        return ["zopenco"]

    insults = RefreshingInsults(fetch, interval=0.0001)
    assert insults.current() == ["zopenco"]
    time.sleep(0.001)
    assert insults.current() == ["zopenco"]


def test_settings_round_trip_through_flags_and_environment() -> None:
    import argparse

    from middlewares import settings as settings_module

    original = Settings(namespace="ns1", insult_port=1234, load_defaults=False, work_ms=2.5)
    parser = argparse.ArgumentParser()
    settings_module.add_arguments(parser)
    assert settings_module.from_args(parser.parse_args(original.to_args())) == original
    from_env = Settings.from_env(
        {
            "INSULTBENCH_NAMESPACE": "envns",
            "REDIS_URL": "redis://h:1/0",
            "INSULTBENCH_LOAD_DEFAULTS": "no",
        }
    )
    assert (from_env.namespace, from_env.redis_url, from_env.load_defaults) == (
        "envns",
        "redis://h:1/0",
        False,
    )


@pytest.mark.parametrize(
    "changes", [{"namespace": ""}, {"namespace": "a b"}, {"work_kind": "gpu"}, {"timeout": 0}]
)
def test_invalid_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Settings(**changes)


def test_settings_from_env_names_the_bad_variable() -> None:
    with pytest.raises(ValueError, match="INSULTBENCH_TIMEOUT"):
        Settings.from_env({"INSULTBENCH_TIMEOUT": "soon"})


def test_simulated_work_is_done_one_request_at_a_time_per_process():
    # Four threads of a thread-per-connection server, 20 ms of sleep each: one node with
    # one core's capacity takes at least 80 ms for them, not 20 ms.
    settings = Settings(work_ms=20, work_kind="sleep")
    threads = [threading.Thread(target=simulate_work, args=[settings]) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 0.079
