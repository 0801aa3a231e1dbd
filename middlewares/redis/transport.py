"""Redis as a transport: key names, connections, and the reliable queue every service reads.

The InsultService, the InsultFilter workers and the echo baseline all consume a list the
same way, so that is written once here (:class:`ReliableConsumer`): a consumer moves a
message from the shared list into a processing list of its own, handles it, and then in
one Lua script removes it from the processing list *and* pushes its answers. A consumer
killed at any moment therefore loses nothing: what it held is still in its processing
list, and is put back on the shared list by the same consumer when it restarts, or by any
live consumer once the dead one's heartbeat key has expired. Because the answer is only
written by the script that removes the message, a message handed out twice (after a
consumer was wrongly thought dead) is still answered exactly once. The same script adds
the number of messages it acknowledged to the consumer's field of the per-node counters
(:func:`middlewares.cluster.counters_key`), so those counts are exact too.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from middlewares import settings as settings_module
from middlewares.cluster import counters_key, store_key
from middlewares.contract import BrokerUnavailable
from middlewares.core import InsultError
from middlewares.runtime import StopSignal, configure_logging, parse_node_id, run_main
from middlewares.service import decode_request
from middlewares.settings import Settings

log = logging.getLogger(__name__)

#: What to tell a user whose Redis cannot be reached.
START_HINT = "start it with `docker compose up -d redis` or `python -m middlewares brokers up`"

#: BLMOVE and LMOVE appeared in Redis 6.2.
MIN_REDIS_VERSION = (6, 2)

#: The errors that mean "Redis is not there", as opposed to a refused command.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)

#: Most messages a consumer claims in one round trip when requests carry no simulated work.
PREFETCH = 16

#: A consumer refreshes its heartbeat this often, and is presumed dead this long after.
HEARTBEAT_EVERY = 1.0
HEARTBEAT_TTL = 5.0

#: How often a consumer looks for dead consumers whose messages must be re-queued.
SWEEP_EVERY = 2.0


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one service's queue, all under ``prefix`` (e.g. ``<ns>:filter``).

    Attributes:
        prefix: The service's key prefix.
        queue: The list clients LPUSH messages on and consumers take them from (the right).
        counters: Hash of the messages each consumer acknowledged, by consumer id: the
            per-node counters of the n-node form.
    """

    prefix: str
    queue: str
    counters: str

    @property
    def consumers(self) -> str:
        """Set of the ids of the consumers that may hold messages."""
        return f"{self.prefix}:consumers"

    def processing(self, consumer_id: str) -> str:
        """List of the messages ``consumer_id`` holds and has not answered yet."""
        return f"{self.prefix}:processing:{consumer_id}"

    def heartbeat(self, consumer_id: str) -> str:
        """Key that exists while ``consumer_id`` is alive (it has a short TTL)."""
        return f"{self.prefix}:heartbeat:{consumer_id}"

    def replies(self, client_id: str) -> str:
        """A client's private reply list."""
        return f"{self.prefix}:replies:{client_id}"


@dataclass(frozen=True)
class Keys:
    """Every Redis name of one namespace; ``docs/PROTOCOL.md`` lists the same."""

    namespace: str

    @property
    def insults(self) -> QueueKeys:
        """The InsultService's request queue."""
        ns = self.namespace
        return QueueKeys(f"{ns}:insults", f"{ns}:insults:requests", counters_key(ns, "insult"))

    @property
    def filter(self) -> QueueKeys:
        """The InsultFilter's task queue."""
        ns = self.namespace
        return QueueKeys(f"{ns}:filter", f"{ns}:filter:tasks", counters_key(ns, "filter"))

    @property
    def echo(self) -> QueueKeys:
        """The echo baseline's request queue."""
        ns = self.namespace
        return QueueKeys(f"{ns}:echo", f"{ns}:echo:requests", counters_key(ns, "echo"))

    @property
    def store(self) -> str:
        """Set of the canonical insults: the n-node form's shared store, whose name
        :mod:`middlewares.cluster` owns."""
        return store_key(self.namespace)

    @property
    def broadcast(self) -> str:
        """Pub/sub channel of the broadcast insults."""
        return f"{self.namespace}:insults:broadcast"

    @property
    def results(self) -> str:
        """The filter's bounded result list, newest first."""
        return f"{self.namespace}:filter:results"


def unavailable(settings: Settings, hint: str = START_HINT) -> BrokerUnavailable:
    """The error for a Redis that cannot be reached (or used) at ``settings.redis_url``."""
    return BrokerUnavailable(settings.redis_url, hint)


def connect(settings: Settings, timeout: float | None = None) -> redis.Redis:
    """A client with a connection pool of its own, proven by a PING.

    Every socket operation times out after ``timeout`` (default ``settings.timeout``), and
    nothing is retried behind the caller's back: redis-py's default retries would send a
    timed-out LPUSH twice.
    """
    seconds = settings.timeout if timeout is None else timeout
    try:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=seconds,
            socket_connect_timeout=seconds,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as error:
        raise unavailable(settings, f"not a Redis URL ({error})") from None
    try:
        client.ping()
    except REDIS_DOWN as error:
        client.close()
        raise unavailable(settings) from error
    return client


@contextmanager
def redis_errors_as_unavailable(settings: Settings) -> Iterator[None]:
    """Turn a lost Redis into :class:`BrokerUnavailable`: one line, no traceback."""
    try:
        yield
    except REDIS_DOWN as error:
        raise unavailable(settings) from error


def block_seconds(settings: Settings) -> float:
    """How long one blocking pop may wait: well under the socket timeout, and short
    enough that a process notices a stop request within a second."""
    return min(1.0, settings.timeout / 2)


def prefetch_for(settings: Settings) -> int:
    """How many messages a consumer claims at once.

    Cheap requests are batched to save round trips; requests with simulated work are
    taken one at a time, so that competing consumers share the load evenly.
    """
    return 1 if settings.work_ms > 0 else PREFETCH


def reply_ttl(settings: Settings) -> int:
    """Seconds a request/reply list lives after its last reply: far past any client's
    wait, short enough that replies nobody collects do not pile up."""
    return max(60, int(3 * settings.timeout))


def parse_request(raw: bytes) -> tuple[dict[str, Any], str] | None:
    """A request and the list to answer it on, or None (logged) if it cannot be answered."""
    try:
        message = decode_request(raw)
    except InsultError as error:
        log.warning("dropped a message that cannot be answered: %s", error)
        return None
    reply_to = message.get("reply_to")
    if not isinstance(reply_to, str) or not reply_to:
        log.warning("dropped request id=%r: reply_to must name a list", message.get("id"))
        return None
    return message, reply_to


@dataclass(frozen=True)
class Ack:
    """The outcome of one claimed message, applied atomically by :class:`ReliableConsumer`.

    Attributes:
        raw: The message exactly as it was claimed.
        reply_to: List to push the reply on (its TTL is refreshed), or None.
        reply: The answer for the submitter; with a ``store_op``, only its beginning.
        log_entry: Pushed on the consumer's log list (the filter's results), if not empty.
        store_op: ``add``, ``all`` or ``random``: an operation on the consumer's store set
            run in the same atomic step; its result, as JSON, and ``}`` end the reply.
        store_arg: The operation's argument (the canonical insult to add).
    """

    raw: bytes
    reply_to: str | None = None
    reply: bytes = b""
    log_entry: bytes = b""
    store_op: str = ""
    store_arg: str = ""


# KEYS: processing list, counters hash, then every other key named by an index in ARGV
#       (0: none).
# ARGV: reply TTL (s), log length, consumer id, then 8 values per message: raw, reply
#       key index, reply, log key index, log entry, store key index, store op, store op
#       argument.
# The LREM guard makes all of it happen once: a message that was re-queued meanwhile
# belongs to its new holder, which answers it instead. A store operation runs here, with
# the reply, so a crash can never apply an add without answering it or apply it twice;
# the counter is raised here for the same reason, so a node's count is exact.
_ACK = """
local function run_store_op(op, key, argument)
  if op == 'add' then
    return redis.call('SADD', key, argument) == 1 and 'true' or 'false'
  elseif op == 'random' then
    return cjson.encode(redis.call('SRANDMEMBER', key) or '')
  end
  local members = redis.call('SMEMBERS', key)
  if #members == 0 then return '[]' end
  table.sort(members)
  return cjson.encode(members)
end

local acked = 0
for i = 4, #ARGV, 8 do
  if redis.call('LREM', KEYS[1], -1, ARGV[i]) == 1 then
    acked = acked + 1
    local reply = ARGV[i + 2]
    local store_key = tonumber(ARGV[i + 5])
    if store_key > 0 then
      reply = reply .. run_store_op(ARGV[i + 6], KEYS[store_key], ARGV[i + 7]) .. '}'
    end
    local reply_key = tonumber(ARGV[i + 1])
    if reply_key > 0 then
      -- pcall: a reply_to naming a key of another type must not stop the other acks.
      redis.pcall('LPUSH', KEYS[reply_key], reply)
      redis.pcall('EXPIRE', KEYS[reply_key], ARGV[1])
    end
    local log_key = tonumber(ARGV[i + 3])
    if log_key > 0 then
      redis.call('LPUSH', KEYS[log_key], ARGV[i + 4])
      redis.call('LTRIM', KEYS[log_key], 0, tonumber(ARGV[2]) - 1)
    end
  end
end
if acked > 0 then redis.call('HINCRBY', KEYS[2], ARGV[3], acked) end
return acked
"""

# KEYS: queue, processing list. ARGV: most messages to move. Oldest first, as BLMOVE.
_CLAIM = """
local claimed = {}
for _ = 1, tonumber(ARGV[1]) do
  local message = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not message then break end
  claimed[#claimed + 1] = message
end
return claimed
"""

# KEYS: processing list, queue, heartbeat, consumer set. ARGV: consumer id, force.
# Without force, only a consumer whose heartbeat expired is emptied. The oldest claimed
# message goes back to the consuming end first, so it is the next one handed out.
_REQUEUE = """
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local moved = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do moved = moved + 1 end
redis.call('SREM', KEYS[4], ARGV[1])
return moved
"""


class ReliableConsumer:
    """One consumer of a reliable list queue: claim, handle, then acknowledge atomically.

    Messages are moved from ``keys.queue`` into ``keys.processing(consumer_id)`` and only
    leave it in the Lua script that writes their answers. A consumer restarted with the
    same id first re-queues its own processing list; every consumer also re-queues the
    processing lists of consumers whose heartbeat expired.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: QueueKeys,
        consumer_id: str,
        settings: Settings,
        reply_ttl: int,
        log_key: str | None = None,
        log_length: int = 0,
        store_key: str | None = None,
    ) -> None:
        self.consumer_id = consumer_id
        self._redis = client
        self._keys = keys
        self._processing = keys.processing(consumer_id)
        self._heartbeat = keys.heartbeat(consumer_id)
        self._prefetch = prefetch_for(settings)
        self._block = block_seconds(settings)
        self._reply_ttl = reply_ttl
        self._log_key = log_key
        self._log_length = log_length
        self._store_key = store_key
        self._shas: dict[str, str] = {}
        self._next_beat = 0.0
        self._next_sweep = 0.0

    def start(self) -> None:
        """Load the scripts, re-queue what an earlier life of this consumer held, and
        announce it alive."""
        self._load_scripts()
        pipe = self._redis.pipeline(transaction=False)
        self._requeue(pipe, self.consumer_id, force=True)
        self._beat(pipe)
        moved = pipe.execute()[0]
        if moved:
            log.warning("re-queued %d message(s) held by an earlier %s", moved, self.consumer_id)

    def exchange(self, acks: Sequence[Ack]) -> list[bytes]:
        """Acknowledge ``acks`` and claim the next messages, waiting up to a second.

        One round trip: the acknowledgements, the heartbeat, a BLMOVE that waits for one
        message, and a script that claims up to ``prefetch - 1`` more of those waiting.
        """
        if time.monotonic() >= self._next_sweep:
            self._sweep()
        results = self._run(lambda pipe: self._claim(pipe, acks))
        if results is None or results[-2] is None:
            return []
        return [results[-2], *results[-1]]

    def keep_alive(self) -> None:
        """Refresh the heartbeat if it is due; call it between long-running messages."""
        if time.monotonic() >= self._next_beat:
            pipe = self._redis.pipeline(transaction=False)
            self._beat(pipe)
            pipe.execute()

    def finish(self, acks: Sequence[Ack]) -> None:
        """Acknowledge the last messages and leave: nothing held, no heartbeat."""

        def leave(pipe: redis.client.Pipeline) -> None:
            self._ack(pipe, acks)
            self._requeue(pipe, self.consumer_id, force=True)
            pipe.delete(self._heartbeat)

        if self._run(leave) is None:
            self._run(leave)

    def _claim(self, pipe: redis.client.Pipeline, acks: Sequence[Ack]) -> None:
        self._ack(pipe, acks)
        if time.monotonic() >= self._next_beat:
            self._beat(pipe)
        queue, processing = self._keys.queue, self._processing
        pipe.blmove(queue, processing, self._block, "RIGHT", "LEFT")
        pipe.evalsha(self._shas[_CLAIM], 2, queue, processing, self._prefetch - 1)

    def _run(self, build: Callable[[redis.client.Pipeline], None]) -> list[Any] | None:
        """Execute one pipeline and return its results, or None if Redis had lost the Lua
        scripts (SCRIPT FLUSH, a restart).

        Scripts run by SHA to save bandwidth. When they are gone, nothing of the failed
        scripts happened but a BLMOVE may have, so the scripts are loaded again and the
        whole processing list goes back on the queue: the messages being acknowledged
        are handled again (their answers are still written once, guarded by LREM).
        """
        pipe = self._redis.pipeline(transaction=False)
        build(pipe)
        try:
            return pipe.execute()
        except redis.exceptions.NoScriptError:
            log.warning("Redis lost the Lua scripts; loading them again")
            self.start()
            return None

    def _load_scripts(self) -> None:
        scripts = (_ACK, _CLAIM, _REQUEUE)
        self._shas = {script: self._redis.script_load(script) for script in scripts}

    def _ack(self, pipe: redis.client.Pipeline, acks: Sequence[Ack]) -> None:
        if not acks:
            return
        keys = [self._processing, self._keys.counters]
        index: dict[str, int] = {}

        def key_index(key: str | None) -> int:
            if key is None:
                return 0
            if key not in index:
                keys.append(key)
                index[key] = len(keys)
            return index[key]

        args: list[bytes | str | int] = [self._reply_ttl, self._log_length, self.consumer_id]
        for ack in acks:
            log_key = self._log_key if ack.log_entry else None
            store_key = self._store_key if ack.store_op else None
            args += [ack.raw, key_index(ack.reply_to), ack.reply, key_index(log_key)]
            args += [ack.log_entry, key_index(store_key), ack.store_op, ack.store_arg]
        pipe.evalsha(self._shas[_ACK], len(keys), *keys, *args)

    def _beat(self, pipe: redis.client.Pipeline) -> None:
        self._next_beat = time.monotonic() + HEARTBEAT_EVERY
        pipe.set(self._heartbeat, "alive", px=int(HEARTBEAT_TTL * 1000))
        pipe.sadd(self._keys.consumers, self.consumer_id)

    def _requeue(self, pipe: redis.client.Pipeline, consumer_id: str, force: bool) -> None:
        keys = self._keys
        pipe.evalsha(
            self._shas[_REQUEUE],
            4,
            keys.processing(consumer_id),
            keys.queue,
            keys.heartbeat(consumer_id),
            keys.consumers,
            consumer_id,
            "1" if force else "0",
        )

    def _sweep(self) -> None:
        """Re-queue what consumers whose heartbeat expired were holding."""
        self._next_sweep = time.monotonic() + SWEEP_EVERY
        others = [
            member.decode()
            for member in self._redis.smembers(self._keys.consumers)
            if member.decode() != self.consumer_id
        ]
        if not others:
            return
        pipe = self._redis.pipeline(transaction=False)
        for other in others:
            self._requeue(pipe, other, force=False)
        for other, moved in zip(others, pipe.execute(), strict=True):
            if moved > 0:
                log.warning("consumer %s is gone; re-queued %d message(s) it held", other, moved)


Handler = Callable[[list[bytes]], list[Ack]]


def consume(consumer: ReliableConsumer, handle: Handler, stop: StopSignal) -> None:
    """Claim, handle and acknowledge until ``stop``; then acknowledge what is held and leave."""
    consumer.start()
    acks: list[Ack] = []
    while not stop.is_set():
        acks = handle(consumer.exchange(acks))
    consumer.finish(acks)


def encode(message: dict[str, Any]) -> bytes:
    """A JSON message as UTF-8 bytes (non-ASCII kept readable for redis-cli users)."""
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


def run_process(
    prog: str,
    description: str,
    serve: Callable[[Settings, str, StopSignal], None],
    argv: list[str] | None = None,
) -> None:
    """Entry point of a service process: parse flags, log, serve until SIGINT/SIGTERM.

    ``--node-id`` names the process as a consumer and as a node of the n-node form (its
    field in the per-node counters, its value in the broadcaster lease); a process
    restarted with the same id takes back what it held. A lost Redis ends it with one
    line and a non-zero status, so the launcher restarts it; a stop signal ends it with
    status 0 once it has answered everything it claimed.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument(
        "--node-id",
        dest="consumer_id",
        metavar="ID",
        type=parse_node_id,
        required=True,
        help="this node's id, unique in the namespace and kept across restarts",
    )
    settings_module.add_arguments(parser)
    args = parser.parse_args(argv)
    settings = settings_module.from_args(args)
    configure_logging(f"{prog.rsplit('.', 1)[-1]}[{args.consumer_id}]")
    stop = StopSignal()

    def main() -> None:
        with redis_errors_as_unavailable(settings):
            serve(settings, args.consumer_id, stop)

    run_main(main)
