"""The Redis turn store: runs, turns, results, and the atomic steps that make continuation exactly-once.

Keys (all values JSON or plain strings; nothing pickled)::

    inc:run:{run}                 hash   config (JSON), state, reason, created_at, ended_at
    inc:run:{run}:messages        string the conversation so far (JSON list of messages)
    inc:turn:{run}:{n}            hash   stream_started, sealed, expected (JSON ids), n_expected, deadline,
                                         continued ("1" once, or "blocked"), continued_at, status, stop_reason
    inc:turn:{run}:{n}:results    hash   tool_use_id -> ToolResult JSON (the result ledger: first write wins)
    inc:exec:{run}:{id}           int    how many times the tool function was started for this id
    inc:chain:{run}:{key}         list   tool jobs sharing a concurrency key, in stream order; head is running

The turn's continuation is decided inside Lua scripts, so exactly one caller ever sees ``"continue"``:
the one whose result completes a sealed turn, or the seal itself when every result was already in,
or the monitor at the deadline. Whoever sees it enqueues the next turn (with a deterministic job id).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.asyncio import Redis

from ..tools._results import ToolResult

__all__ = ["RunRecord", "TurnStore"]

_ADD_RESULT = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 'dup' end
if redis.call('HGET', KEYS[1], 'sealed') == '1' and not redis.call('HGET', KEYS[1], 'continued') then
  local n = tonumber(redis.call('HGET', KEYS[1], 'n_expected') or '0')
  if redis.call('HLEN', KEYS[2]) >= n then
    redis.call('HSET', KEYS[1], 'continued', '1', 'continued_at', ARGV[3], 'status', 'complete')
    return 'continue'
  end
end
return 'ok'
"""

_SEAL = """
if redis.call('HGET', KEYS[1], 'sealed') == '1' then return 'already' end
redis.call('HSET', KEYS[1], 'sealed', '1', 'expected', ARGV[1], 'n_expected', ARGV[2],
           'deadline', ARGV[3], 'status', 'sealed', 'sealed_at', ARGV[4])
if not redis.call('HGET', KEYS[1], 'continued') and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'continued', '1', 'continued_at', ARGV[4], 'status', 'complete')
  return 'continue'
end
return 'ok'
"""

_EXPIRE = """
if redis.call('HGET', KEYS[1], 'continued') then return 'already' end
if redis.call('HGET', KEYS[1], 'sealed') ~= '1' then return 'unsealed' end
for i = 2, #ARGV, 2 do redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'continued', '1', 'continued_at', ARGV[1], 'status', 'deadline')
return 'continue'
"""

_BLOCK = """
if redis.call('HGET', KEYS[1], 'continued') then return 0 end
redis.call('HSET', KEYS[1], 'continued', 'blocked', 'status', ARGV[1], 'reason', ARGV[2])
return 1
"""

_END_RUN = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'ended_at', ARGV[3])
return 1
"""

_CHAIN_ADD = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 86400)
return redis.call('LLEN', KEYS[1])
"""

_CHAIN_NEXT = """
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return false end
if cjson.decode(head)['tool_use_id'] ~= ARGV[1] then return false end
redis.call('LPOP', KEYS[1])
return redis.call('LINDEX', KEYS[1], 0)
"""


T = TypeVar("T")


async def _a(value: Awaitable[T] | T) -> T:
    """redis-py's asyncio client is typed as sync-or-async; every call here is async."""
    if inspect.isawaitable(value):
        return await value
    return value


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class RunRecord(dict[str, Any]):
    """A run's hash, decoded: ``config`` parsed, everything else as strings."""

    @property
    def config(self) -> dict[str, Any]:
        value: dict[str, Any] = self.get("config") or {}
        return value

    @property
    def state(self) -> str:
        return str(self.get("state") or "")


class TurnStore:
    """Typed access to the keys above. One instance per Redis connection."""

    TTL_S = 7 * 24 * 3600

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._add_result = redis.register_script(_ADD_RESULT)
        self._seal = redis.register_script(_SEAL)
        self._expire = redis.register_script(_EXPIRE)
        self._block = redis.register_script(_BLOCK)
        self._end_run = redis.register_script(_END_RUN)
        self._chain_add = redis.register_script(_CHAIN_ADD)
        self._chain_next = redis.register_script(_CHAIN_NEXT)

    # ------------------------------------------------------------ keys

    @staticmethod
    def run_key(run_id: str) -> str:
        return f"inc:run:{run_id}"

    @staticmethod
    def turn_key(run_id: str, turn: int) -> str:
        return f"inc:turn:{run_id}:{turn}"

    @staticmethod
    def results_key(run_id: str, turn: int) -> str:
        return f"inc:turn:{run_id}:{turn}:results"

    # ------------------------------------------------------------ runs

    async def create_run(self, run_id: str, config: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        key = self.run_key(run_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={"config": json.dumps(config), "state": "running", "created_at": repr(time.time())},
            )
            pipe.set(f"{key}:messages", json.dumps(messages))
            pipe.expire(key, self.TTL_S)
            pipe.expire(f"{key}:messages", self.TTL_S)
            await pipe.execute()

    async def run(self, run_id: str) -> RunRecord | None:
        raw = await _a(self.redis.hgetall(self.run_key(run_id)))
        if not raw:
            return None
        record = RunRecord({str(_s(k)): _s(v) for k, v in raw.items()})
        record["config"] = json.loads(record.get("config") or "{}")
        return record

    async def end_run(self, run_id: str, state: str, reason: str) -> bool:
        """Move a running run to its final state. False if it had already ended."""
        ended = await self._end_run(keys=[self.run_key(run_id)], args=[state, reason, repr(time.time())])
        return bool(ended)

    async def messages(self, run_id: str) -> list[dict[str, Any]]:
        raw = await self.redis.get(f"{self.run_key(run_id)}:messages")
        value: list[dict[str, Any]] = json.loads(raw) if raw else []
        return value

    async def set_messages(self, run_id: str, messages: list[dict[str, Any]]) -> None:
        await self.redis.set(f"{self.run_key(run_id)}:messages", json.dumps(messages), ex=self.TTL_S)

    # ------------------------------------------------------------ turns

    async def turn(self, run_id: str, turn: int) -> dict[str, str]:
        raw = await _a(self.redis.hgetall(self.turn_key(run_id, turn)))
        return {str(_s(k)): str(_s(v)) for k, v in raw.items()}

    async def claim_stream(self, run_id: str, turn: int) -> bool:
        """True for the first caller only: a turn's model stream is never started twice."""
        key = self.turn_key(run_id, turn)
        claimed = await _a(self.redis.hsetnx(key, "stream_started", repr(time.time())))
        await self.redis.expire(key, self.TTL_S)
        return bool(claimed)

    async def update_turn(self, run_id: str, turn: int, **fields: str) -> None:
        await _a(self.redis.hset(self.turn_key(run_id, turn), mapping=fields))

    async def add_result(self, run_id: str, turn: int, result: ToolResult) -> str:
        """Record a result (first write wins). Returns ``"continue"``, ``"ok"`` or ``"dup"``."""
        outcome = await self._add_result(
            keys=[self.turn_key(run_id, turn), self.results_key(run_id, turn)],
            args=[result.tool_use_id, result.to_json(), repr(time.time())],
        )
        await self.redis.expire(self.results_key(run_id, turn), self.TTL_S)
        return str(_s(outcome))

    async def result(self, run_id: str, turn: int, tool_use_id: str) -> ToolResult | None:
        raw = await _a(self.redis.hget(self.results_key(run_id, turn), tool_use_id))
        return ToolResult.from_json(raw) if raw else None

    async def results(self, run_id: str, turn: int) -> dict[str, ToolResult]:
        raw = await _a(self.redis.hgetall(self.results_key(run_id, turn)))
        return {str(_s(k)): ToolResult.from_json(v) for k, v in raw.items()}

    async def seal(self, run_id: str, turn: int, expected: list[str], deadline: float) -> str:
        """The stream ended asking for these ids. Returns ``"continue"``, ``"ok"`` or ``"already"``."""
        outcome = await self._seal(
            keys=[self.turn_key(run_id, turn), self.results_key(run_id, turn)],
            args=[json.dumps(expected), str(len(expected)), repr(deadline), repr(time.time())],
        )
        return str(_s(outcome))

    async def expire_turn(self, run_id: str, turn: int, missing: list[ToolResult]) -> str:
        """The deadline passed: fill what is missing and continue. ``"continue"`` for exactly one caller."""
        args: list[str] = [repr(time.time())]
        for result in missing:
            args += [result.tool_use_id, result.to_json()]
        outcome = await self._expire(
            keys=[self.turn_key(run_id, turn), self.results_key(run_id, turn)], args=args
        )
        return str(_s(outcome))

    async def block_continuation(self, run_id: str, turn: int, status: str, reason: str) -> bool:
        """This turn must never continue (its stream failed, or the run was cancelled)."""
        return bool(await self._block(keys=[self.turn_key(run_id, turn)], args=[status, reason]))

    async def count_execution(self, run_id: str, tool_use_id: str) -> int:
        key = f"inc:exec:{run_id}:{tool_use_id}"
        count = int(await _a(self.redis.incr(key)))
        await self.redis.expire(key, self.TTL_S)
        return count

    async def executions(self, run_id: str, tool_use_id: str) -> int:
        raw = await self.redis.get(f"inc:exec:{run_id}:{tool_use_id}")
        return int(raw) if raw else 0

    # ------------------------------------------------------------ concurrency keys

    async def chain_add(self, run_id: str, key: str, job: dict[str, Any]) -> bool:
        """Queue a job behind earlier ones with the same key. True if it may run now (it is the head)."""
        length = await self._chain_add(keys=[f"inc:chain:{run_id}:{key}"], args=[json.dumps(job)])
        return int(length) == 1

    async def chain_next(self, run_id: str, key: str, tool_use_id: str) -> dict[str, Any] | None:
        """The head finished: drop it and return the next job with this key, if any."""
        raw = await self._chain_next(keys=[f"inc:chain:{run_id}:{key}"], args=[tool_use_id])
        if not raw:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value
