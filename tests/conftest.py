"""Fixtures shared by every test: a namespace of its own, free ports, running services.

Tests talk to the real Redis and RabbitMQ. When one is missing a test is skipped on a
laptop but fails under CI (``CI=true``), so CI can never go green by skipping.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from middlewares.contract import Backend
from middlewares.launch.deployment import Deployment
from middlewares.registry import MIDDLEWARES, get_backend
from middlewares.settings import Settings
from tests.helpers import (
    Deploy,
    SharedDeployments,
    delete_leftover_keys,
    each_in_turn,
    fresh_settings,
    new_namespace,
)


@pytest.fixture(scope="session", autouse=True)
def no_keys_left_behind() -> Iterator[None]:
    """After the session, delete what any test left in Redis under its own namespaces."""
    yield
    delete_leftover_keys()


@pytest.fixture
def namespace() -> str:
    """A namespace no other test or run uses."""
    return new_namespace()


@pytest.fixture
def settings(namespace: str) -> Settings:
    """Settings with a private namespace and free ports, and short timeouts for tests."""
    return fresh_settings(namespace)


@pytest.fixture(params=MIDDLEWARES)
def middleware(request: pytest.FixtureRequest, settings: Settings) -> Iterator[str]:
    """Each middleware in turn; its namespace is cleaned up after the test."""
    yield from each_in_turn(request.param, settings)


@pytest.fixture
def backend(middleware: str) -> Backend:
    """The backend of the middleware under test."""
    return get_backend(middleware)


@pytest.fixture
def deploy(middleware: str, settings: Settings) -> Iterator[Deploy]:
    """Start services through the launcher: ``deploy("filter", workers=2, **changes)``,
    or the n-node form with ``deploy("insult", nodes=3)``.

    Every deployment is stopped at teardown, also when the test fails.
    """
    started: list[Deployment] = []

    def start(
        service: str, workers: int = 1, nodes: int | None = None, **changes: object
    ) -> Deployment:
        deployment = Deployment(
            middleware, service, settings.with_changes(**changes), workers, nodes=nodes
        )
        deployment.start()
        started.append(deployment)
        return deployment

    yield start
    for deployment in reversed(started):
        deployment.stop()


@pytest.fixture(scope="module")
def shared_deploy() -> Iterator[SharedDeployments]:
    """Deployments shared by the tests of one module (see :class:`SharedDeployments`),
    stopped and cleaned up when the module is done."""
    shared = SharedDeployments()
    yield shared
    shared.stop_all()


@pytest.fixture
def insult_settings(shared_deploy: SharedDeployments, middleware: str) -> Settings:
    """The settings of the module's one InsultService of the middleware under test, which
    checks that each send one bad input share."""
    return shared_deploy(middleware, "insult").settings


@pytest.fixture
def filter_settings(shared_deploy: SharedDeployments, middleware: str) -> Settings:
    """The settings of the module's one filter (texts up to 2048 bytes) of the middleware
    under test, which checks that each send one bad input share."""
    return shared_deploy(middleware, "filter", max_text_bytes=2048).settings


@pytest.fixture
def client(namespace: str) -> Iterator[redis.Redis]:
    """A Redis client; every key of the test's namespace is deleted afterwards."""
    connection = redis.Redis.from_url(Settings.from_env().redis_url, socket_timeout=5)
    try:
        connection.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is needed: {error}")
    yield connection
    keys = list(connection.scan_iter(f"{namespace}:*"))
    if keys:
        connection.delete(*keys)
    connection.close()
