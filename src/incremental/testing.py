"""A pytest plugin (registered as ``incremental`` in the ``pytest11`` entry point): real parts for tests.

Fixtures:

``redis_url`` (session)
    ``$REDIS_URL`` when set, else the URL of a private ``redis-server`` started for the session.

``fake_messages_api`` (function; needs pytest-asyncio)
    A factory that starts a ``FakeMessagesAPI`` and stops it at teardown::

        async def test_my_agent(fake_messages_api):
            api = await fake_messages_api(["turn1.sse", "turn2.sse"], speed=0)
            await my_agent(base_url=api.url)
            assert api.rejections == []

The heavy modules (uvicorn, starlette, redis) are imported inside the fixtures, so loading the
plugin costs nothing for test suites that do not use them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from .fake_api import FakeMessagesAPI, Fault

__all__ = ["FakeMessagesAPIFactory", "fake_messages_api", "redis_url"]


class FakeMessagesAPIFactory(Protocol):
    """The ``fake_messages_api`` fixture: the arguments of ``FakeMessagesAPI``, a started server back."""

    async def __call__(
        self,
        turns: Sequence[str | Path | bytes],
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Mapping[int, Fault] | None = None,
    ) -> FakeMessagesAPI: ...


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``$REDIS_URL``, else a private redis-server for the whole session."""
    from .adapters._redis_server import redis_url as _redis_url

    with _redis_url() as url:
        yield url


def _async_fixture(func: Any) -> Any:
    # pytest-asyncio runs async fixtures in any asyncio_mode; without it pytest says it cannot.
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover
        return pytest.fixture(func)
    return pytest_asyncio.fixture(func)


@_async_fixture
async def fake_messages_api() -> AsyncIterator[FakeMessagesAPIFactory]:
    """A factory: ``api = await fake_messages_api(turns, speed=0)`` is started, and stopped at teardown."""
    from .fake_api import FakeMessagesAPI

    started: list[FakeMessagesAPI] = []

    async def factory(turns: Sequence[str | Path | bytes], **options: Any) -> FakeMessagesAPI:
        api = FakeMessagesAPI(turns, **options)
        await api.start()
        started.append(api)
        return api

    try:
        yield factory
    finally:
        for api in reversed(started):
            await api.stop()
