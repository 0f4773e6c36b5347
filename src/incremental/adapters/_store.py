"""The Redis turn store: runs, turns, results, and the atomic steps that make continuation exactly-once.

Keys (all values JSON or plain strings; nothing pickled)::

    inc:run:{run}                 hash   config (JSON), state, reason, created_at, ended_at, queue
    inc:run:{run}:messages        string the conversation so far (JSON list of messages)
    inc:turn:{run}:{n}            hash   stream_started, sealed, expected (JSON ids), n_expected, deadline,
                                         continued ("1" once, or "blocked"), continued_at, status,
                                         stop_reason, sealed_at,
                                         continue_sent (when the next turn's job was enqueued: once),
                                         stream_generation (the generation of this turn's stream job that
                                         may run), deadline_paused (the pause that last held the deadline),
                                         dispatched ("1" once a call of the turn was handed to a worker:
                                         from then on the turn is never requested again), continued_by
                                         (the tool_use id whose result completed the turn),
                                         stream_end ("message": the stream job reached message_stop;
                                         "salvage": another job took the cut stream over)
    inc:turn:{run}:{n}:results    hash   tool_use_id -> ToolResult JSON (the result ledger: first write wins)
    inc:turn:{run}:{n}:blocks     hash   index -> JSON {block, status, reason}: each content block of the
                                         turn's message once it stopped (what a salvage rebuilds the
                                         message from); dropped when the stream's end is recorded
    inc:exec:{run}:{id}           int    how many times the tool function was started for this id
    inc:run:{run}:starts          hash   tool_use_id -> "token|n": the job try that made start n (a retried
                                         command of the same try gets the same answer, not a new start)
    inc:chain:{run}:{key}         list   tool jobs sharing a concurrency key, in stream order; head is running
    inc:run:{run}                 ...    also turn (the turn streaming now), paused ("1"), paused_at, pending
                                         (JSON {turn, trigger}: a continuation decided while paused; with
                                         "sent": true, one already sent whose stream job found the run paused)
    inc:run:{run}:tools           hash   tool_use_id -> JSON {turn, name}: every client tool_use of the run
    inc:run:{run}:held            list   tool jobs (JSON) held because the run is paused, released by resume
    inc:run:{run}:cancels         hash   tool_use_id -> reason: a cancel was asked for this tool
    inc:run:{run}:generations     hash   tool_use_id -> the job generation that may run (see ToolJob)
    inc:run:{run}:inputs          hash   tool_use_id -> the call's validated input (JSON), from dispatch
                                         until its result is recorded: tool jobs carry a reference, and
                                         the worker reads the input here (``tool_input``)
    inc:run:{run}                 ...    also retention_s, trim_after_s (the run's ``Retention``: "off"
                                         or seconds), retained (set at the end under a retention: every
                                         key written from then on gets the record's remaining TTL),
                                         trimmed ("1" once ``trim_run`` ran)

Retention (``_retention``): a running run's keys expire ``TTL_S`` after their last write; when it ends
under a retention every key of it expires ``retention_s`` from then (``end_run``, ``retain``), and
``trim_run`` later drops the records only a running run needs (``WORKING_PARTS``, turn records,
execution counters, the control channel), keeping the record, the conversation, the results ledgers
and the tool index (``cancel_tool`` of a finished call still answers ``"finished"``).

The turn's continuation is decided inside Lua scripts, so exactly one caller ever sees ``"continue"``:
the one whose result completes a sealed turn, or the seal itself when every result was already in,
or the monitor at the deadline. Whoever sees it enqueues the next turn (with a deterministic job id).

A call that becomes ready costs its stream one script (``_ENQUEUE_TOOL``): the stream's pending log
entries, the call's block kept, its ``tool_ready`` entry, the turn marked dispatched, its input stored,
its place behind the earlier calls with its concurrency key, and the job enqueued with its
``tool_enqueued`` entry. A tool job's start (``_START_TOOL``) reads the run's record and the input in
the same call, and its result (``_ADD_RESULT_LOGGED``) carries the progress still waiting to be logged.

Pause and cancel are scripts too. A job is held (``_HOLD``) only if the run is still paused, and a
tool starts (``_START_TOOL``) in one step that also reads the paused flag, the run's state, a cancel
asked for it and its result; ``_RELEASE`` clears the flag and takes the held jobs and the pending
continuation in one step. So a job is either held before a resume (and released by it) or sees the run
unpaused, and a tool is either cancelled before it starts (it never runs) or counted as started before
the cancel (it is signalled). The job's JSON (a file write can carry megabytes) goes to Redis only to
be held, never just to ask whether the run is paused.

A pause also holds the turn's deadline: ``_EXPIRE`` fills in nothing while the run is paused (held tools
have not had their chance), and ``_RELEASE`` pushes the deadline of the run's sealed turn forward by the
time it was both sealed and paused. Sending the next turn is decided once (``_PEND`` sets
``continue_sent``: whoever sets it enqueues the next turn and logs the turn's end), and a stream job that
finds the run paused before its first request records that (``_OPEN_STREAM``) instead of requesting.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from redis.asyncio import Redis

from ..tools._results import ToolResult
from ._arq import ENQUEUE_LUA, ToolJob, tool_enqueue_args
from ._control import control_key
from ._eventlog import LOG_ENTRY_LUA
from ._retention import RUN_TTL_LUA, Retention, run_key

if TYPE_CHECKING:
    from ..events import RunEventModel
    from ._eventlog import EventLog

__all__ = ["RunRecord", "ToolStart", "TurnStore"]

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

# A job queued behind the earlier ones with its concurrency key (once): its place in the line, from 1.
CHAIN_ADD_LUA = """
local function chain_add(chain, job)
  local at = redis.call('LPOS', chain, job)
  if at then return at + 1 end
  redis.call('RPUSH', chain, job)
  redis.call('EXPIRE', chain, 86400)
  return redis.call('LLEN', chain)
end
"""

# A content block kept as it stopped, unless the stream's end was recorded (or taken over): 0 then.
KEEP_BLOCK_LUA = """
local function keep_block(turn, blocks, index, record, ttl)
  if redis.call('HEXISTS', turn, 'stream_end') == 1 then return 0 end
  redis.call('HSET', blocks, index, record)
  redis.call('EXPIRE', blocks, ttl)
  return 1
end
"""

# A tool job enqueued, unless its run is paused, with its tool_enqueued event, in one call; before it,
# when given, the call's block kept and its tool_ready event (the stream's step at ToolReady: the turn
# is marked dispatched in the same step), its input stored, and its place taken behind the earlier
# calls with its concurrency key (if there are any, it waits: tool_waiting, and no enqueue).
# KEYS: the run's record, arq's four (``arq_enqueue``), the log's events and milestones, the turn, its
# blocks, the run's inputs, the key's chain; ARGV: arq's five, the TTL, the call's id, its input JSON
# ('' for none), the block's index ('' for no ready step) and record, the job for the chain ('' for
# none), how many events come first, then the log's entries (``log_entry_at``): those (the stream's
# pending ones), tool_ready (with the ready step), tool_waiting (with a chain), tool_enqueued.
# 'superseded' when the stream was taken over: nothing was written.
_ENQUEUE_TOOL = (
    ENQUEUE_LUA
    + LOG_ENTRY_LUA
    + KEEP_BLOCK_LUA
    + CHAIN_ADD_LUA
    + """
if ARGV[9] ~= '' and keep_block(KEYS[8], KEYS[9], ARGV[9], ARGV[10], ARGV[6]) == 0 then
  return {'superseded', ''}
end
local i = 13
local _
for _ = 1, tonumber(ARGV[12]) do
  _, i = log_entry_at(KEYS[6], KEYS[7], KEYS[1], i)
end
if ARGV[9] ~= '' then
  _, i = log_entry_at(KEYS[6], KEYS[7], KEYS[1], i)
  redis.call('HSET', KEYS[8], 'dispatched', '1')
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[10], ARGV[7], ARGV[8])
  redis.call('EXPIRE', KEYS[10], ARGV[6])
end
if ARGV[11] ~= '' then
  if chain_add(KEYS[11], ARGV[11]) > 1 then
    local id = log_entry_at(KEYS[6], KEYS[7], KEYS[1], i)
    return {'waiting', id}
  end
  i = entry_end(i)
end
if redis.call('HGET', KEYS[1], 'paused') == '1' then
  return {'paused', ''}
end
if arq_enqueue(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]) == 0 then
  return {'exists', ''}
end
local id = log_entry_at(KEYS[6], KEYS[7], KEYS[1], i)
return {'enqueued', id}
"""
)

# KEYS turn, results, events, milestones, run, inputs  ARGV id, result JSON, now, ledger ttl, how many
# events come before the result's, then the log's entries (``log_entry_at``): those, then the result's
# event. The result and its event are written together: a result in the ledger always has its event
# in the log; the call's stored input goes with it (no job needs it once the result is in).
# A second write of the very same result (a command retried after its reply was lost) is 'mine', or
# 'continue' again if it was the one that completed the turn; the events before it are written anyway.
_ADD_RESULT_LOGGED = (
    LOG_ENTRY_LUA
    + """
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local _
  _, i = log_entry_at(KEYS[3], KEYS[4], KEYS[5], i)
end
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then
  if existing ~= ARGV[2] then return {'dup', ''} end
  if redis.call('HGET', KEYS[1], 'continued_by') == ARGV[1] then return {'continue', ''} end
  return {'mine', ''}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], run_ttl(KEYS[5], ARGV[4]))
redis.call('HDEL', KEYS[6], ARGV[1])
local id = log_entry_at(KEYS[3], KEYS[4], KEYS[5], i)
if redis.call('HGET', KEYS[1], 'sealed') == '1' and not redis.call('HGET', KEYS[1], 'continued') then
  local n = tonumber(redis.call('HGET', KEYS[1], 'n_expected') or '0')
  if redis.call('HLEN', KEYS[2]) >= n then
    redis.call('HSET', KEYS[1], 'continued', '1', 'continued_at', ARGV[3], 'status', 'complete',
               'continued_by', ARGV[1])
    return {'continue', id}
  end
end
return {'ok', id}
"""
)

# KEYS turn, results, blocks  ARGV 'release' (give the claim back: another job requests the turn
# afresh) or 'restart' (this job requests it again), now. Only while nothing of the turn was dispatched;
# the results of the earlier attempt (refusals, which never ran) and its blocks are dropped with it.
_RESTART_STREAM = """
if redis.call('HGET', KEYS[1], 'dispatched') == '1' or redis.call('HGET', KEYS[1], 'sealed') == '1'
   or redis.call('HGET', KEYS[1], 'continued') or redis.call('HEXISTS', KEYS[1], 'stream_end') == 1 then
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
if ARGV[1] == 'release' then
  redis.call('HDEL', KEYS[1], 'stream_started')
else
  redis.call('HSET', KEYS[1], 'stream_started', ARGV[2])
end
return 1
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

# The stream's blocks and its end. Whoever records the end of a turn's stream writes the message, in
# one step with the seal (the ``_SEAL`` text, appended): the stream job at message_stop ("message"), or
# a job that took a cut stream over ("salvage", after ``_TAKE_OVER``). Once a salvage has taken the
# stream, its first job (a worker thought dead that still runs) can neither keep a block nor end it.

# KEYS turn, blocks  ARGV index, block record JSON, ttl
_KEEP_BLOCK = KEEP_BLOCK_LUA + "return keep_block(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])\n"

# KEYS turn  ARGV now. What a job that finds the turn's stream started by another may do: 'done' (sealed
# or ended), 'asked' (nothing dispatched: ask again), 'message' (the stream reached message_stop, not
# tool_use) with its stop_reason, or 'salvage' (the stream is this job's from now on) with the blocks.
_TAKE_OVER = """
if redis.call('HGET', KEYS[1], 'sealed') == '1' or redis.call('HGET', KEYS[1], 'continued') then
  return {'done'}
end
local over = redis.call('HGET', KEYS[1], 'stream_end')
if over == 'message' then return {'message', redis.call('HGET', KEYS[1], 'stop_reason') or ''} end
if not over and redis.call('HGET', KEYS[1], 'dispatched') ~= '1' then return {'asked'} end
redis.call('HSET', KEYS[1], 'stream_end', 'salvage', 'salvaged_at', ARGV[1])
local out = {'salvage'}
for _, item in ipairs(redis.call('HGETALL', KEYS[2])) do out[#out + 1] = item end
return out
"""

# KEYS turn, results, messages, blocks  ARGV expected JSON, n, deadline, now (the seal's), who
# ('message' or 'salvage'), messages JSON, ttl, names JSON, stop_reason, seal ('1': the stop is tool_use)
_END_STREAM = (
    """
local over = redis.call('HGET', KEYS[1], 'stream_end')
if over and over ~= ARGV[5] then return 'taken' end
redis.call('HSET', KEYS[1], 'stream_end', ARGV[5], 'stop_reason', ARGV[9], 'names', ARGV[8])
redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[7])
redis.call('DEL', KEYS[4])
if ARGV[10] ~= '1' then return 'ok' end
"""
    + _SEAL
)

# KEYS turn, results, run  ARGV now, the deadline the caller saw ('' for any), id, result JSON, ...
_EXPIRE = """
if redis.call('HGET', KEYS[1], 'continued') then return 'already' end
if redis.call('HGET', KEYS[1], 'sealed') ~= '1' then return 'unsealed' end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'deadline') ~= ARGV[2] then return 'moved' end
if redis.call('HGET', KEYS[3], 'paused') == '1' then
  local since = redis.call('HGET', KEYS[3], 'paused_at') or ''
  if redis.call('HGET', KEYS[1], 'deadline_paused') == since then return 'paused' end
  redis.call('HSET', KEYS[1], 'deadline_paused', since)
  return 'held'
end
for i = 3, #ARGV, 2 do redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'continued', '1', 'continued_at', ARGV[1], 'status', 'deadline')
return 'continue'
"""

# KEYS turn  ARGV status, reason, '1' when the stream job itself blocks it (-1: another job salvaged
# the stream, whose turn goes on)
_BLOCK = """
if redis.call('HGET', KEYS[1], 'continued') then return 0 end
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 'stream_end') == 'salvage' then return -1 end
redis.call('HSET', KEYS[1], 'continued', 'blocked', 'status', ARGV[1], 'reason', ARGV[2])
return 1
"""

# KEYS run  ARGV state, reason, now, the ender's retention ('off' or seconds, for a run recorded
# without one). Under a retention the record is marked ``retained`` and expires that long from now
# (``TurnStore.retain`` then does the run's other keys); returns the retention in seconds, 'off', or
# 0 when the run had ended already.
_END_RUN = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'ended_at', ARGV[3])
local keep = redis.call('HGET', KEYS[1], 'retention_s') or ARGV[4]
if keep == 'off' then return 'off' end
local seconds = math.max(1, math.ceil(tonumber(keep)))
redis.call('HSET', KEYS[1], 'retained', tostring(seconds))
redis.call('EXPIRE', KEYS[1], seconds)
return tostring(seconds)
"""

_CHAIN_ADD = CHAIN_ADD_LUA + "return chain_add(KEYS[1], ARGV[1])\n"

_CHAIN_NEXT = """
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return false end
if cjson.decode(head)['tool_use_id'] ~= ARGV[1] then return false end
redis.call('LPOP', KEYS[1])
return redis.call('LINDEX', KEYS[1], 0)
"""

# KEYS run, held, generations  ARGV job JSON, ttl, tool_use_id, the job's generation
_HOLD = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' or redis.call('HGET', KEYS[1], 'paused') ~= '1' then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if tonumber(ARGV[4]) > 0 then
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
return 1
"""

# KEYS run, turn, results, exec, cancels, generations, starts  ARGV id, generation, ttl, token
_START_TOOL = """
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 'done' end
if tonumber(ARGV[2]) < tonumber(redis.call('HGET', KEYS[6], ARGV[1]) or '0') then return 'stale' end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 'ended' end
if redis.call('HGET', KEYS[2], 'continued') == 'blocked' then return 'ended' end
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then return 'cancelled' end
if redis.call('HGET', KEYS[1], 'paused') == '1' then return 'paused' end
local function starting(attempt)
  return {attempt, redis.call('HGETALL', KEYS[1]), redis.call('HGET', KEYS[8], ARGV[1]) or false}
end
if ARGV[4] ~= '' then
  local last = redis.call('HGET', KEYS[7], ARGV[1])
  if last then
    local sep = string.find(last, '|', 1, true)
    if string.sub(last, 1, sep - 1) == ARGV[4] then return starting(string.sub(last, sep + 1)) end
  end
end
local n = redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[7], ARGV[1], ARGV[4] .. '|' .. n)
  redis.call('EXPIRE', KEYS[7], ARGV[3])
end
return starting(tostring(n))
"""

# KEYS the run's tools, then (with an event) the log's three; ARGV id, {turn, name}, TTL, then the
# event's entry (``log_entry_at``), if any.
_NOTE_TOOL = (
    LOG_ENTRY_LUA
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if #ARGV > 3 then log_entry_at(KEYS[2], KEYS[3], KEYS[4], 4) end
return 1
"""
)

# KEYS: any; each expires ARGV[1] seconds from now (one call for a run's many keys)
_EXPIRE_ALL = """
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[1]) end
return #KEYS
"""

# KEYS results, exec, cancels, run  ARGV id, reason, ttl
_CANCEL_TOOL = (
    RUN_TTL_LUA
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'finished' end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[3], run_ttl(KEYS[4], ARGV[3]))
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then return 'signalled' end
return 'cancelled'
"""
)

# KEYS run  ARGV now
_PAUSE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return -1 end
if redis.call('HGET', KEYS[1], 'paused') == '1' then return -2 end
redis.call('HSET', KEYS[1], 'paused', '1', 'paused_at', ARGV[1])
return tonumber(redis.call('HGET', KEYS[1], 'turn') or '0')
"""

# KEYS run, held, the run's turn as the caller read it  ARGV "resume" (only a running, paused run) or
# "end" (whatever its state), now, that turn. 'retry' when the run's turn is another one by now.
_RELEASE = """
if ARGV[1] == 'resume' and (redis.call('HGET', KEYS[1], 'state') ~= 'running'
                            or redis.call('HGET', KEYS[1], 'paused') ~= '1') then
  return false
end
local turn = redis.call('HGET', KEYS[1], 'turn') or '0'
if turn ~= ARGV[3] then return 'retry' end
if ARGV[1] == 'resume' and redis.call('HGET', KEYS[3], 'sealed') == '1'
   and not redis.call('HGET', KEYS[3], 'continued') then
  local now = tonumber(ARGV[2])
  local since = math.max(tonumber(redis.call('HGET', KEYS[1], 'paused_at') or ARGV[2]),
                         tonumber(redis.call('HGET', KEYS[3], 'sealed_at') or '0'))
  if now > since then
    local deadline = tonumber(redis.call('HGET', KEYS[3], 'deadline') or '0') + now - since
    redis.call('HSET', KEYS[3], 'deadline', string.format('%.6f', deadline))
  end
end
local out = {redis.call('HGET', KEYS[1], 'pending') or '', turn}
redis.call('HDEL', KEYS[1], 'paused', 'paused_at', 'pending')
for _, job in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do out[#out + 1] = job end
redis.call('DEL', KEYS[2])
return out
"""

# KEYS run, the completed turn, the next turn  ARGV pending JSON, now
_PEND = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 'ended' end
if redis.call('HGET', KEYS[2], 'continue_sent') then return 'sent' end
if redis.call('HGET', KEYS[1], 'paused') ~= '1' then
  redis.call('HSET', KEYS[2], 'continue_sent', ARGV[2])
  return 'go'
end
if redis.call('HEXISTS', KEYS[3], 'stream_started') == 1 then return 'started' end
if redis.call('HSETNX', KEYS[1], 'pending', ARGV[1]) == 0 then return 'waiting' end
return 'pending'
"""

# KEYS run, turn  ARGV now, turn, generation, hold ('1': a paused run's job records that and returns),
# pending JSON, ttl
_OPEN_STREAM = """
if tonumber(ARGV[3]) < tonumber(redis.call('HGET', KEYS[2], 'stream_generation') or '0') then
  return 'stale'
end
if ARGV[4] == '1' and redis.call('HEXISTS', KEYS[2], 'stream_started') == 0
   and redis.call('HGET', KEYS[1], 'state') == 'running' and redis.call('HGET', KEYS[1], 'paused') == '1' then
  redis.call('HSET', KEYS[1], 'pending', ARGV[5])
  return 'paused'
end
redis.call('HSET', KEYS[1], 'turn', ARGV[2])
local claimed = redis.call('HSETNX', KEYS[2], 'stream_started', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[6])
if claimed == 0 then return 'taken' end
return 'claimed'
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

    @property
    def paused(self) -> bool:
        return self.get("paused") == "1"

    @property
    def queue(self) -> str | None:
        """The arq queue of the runner that started the run: its stream and monitor jobs go there."""
        return self.get("queue") or None

    @property
    def turn(self) -> int:
        """The turn streaming now (or last streamed): the one a cancel blocks."""
        return int(self.get("turn") or 0)


def _run_record(raw: dict[Any, Any]) -> RunRecord | None:
    if not raw:
        return None
    record = RunRecord({str(_s(k)): _s(v) for k, v in raw.items()})
    record["config"] = json.loads(record.get("config") or "{}")
    return record


@dataclass(frozen=True)
class ToolStart:
    """What ``TurnStore.begin_tool`` decided (``verdict``, as ``start_tool`` says it), and, when the tool
    is to run, the run's record and the call's stored input, read in the same step."""

    verdict: str
    run: RunRecord | None = None
    args: dict[str, Any] | None = None


class TurnStore:
    """Typed access to the keys above. One instance per Redis connection.

    ``retention``: what new runs are recorded with, and what ends a run recorded without one."""

    TTL_S = 7 * 24 * 3600
    # Per-run records only a running run needs: deleted when the run is trimmed.
    WORKING_PARTS = ("starts", "held", "cancels", "generations", "inputs")

    def __init__(self, redis: Redis, retention: Retention | None = None) -> None:
        self.redis = redis
        self.retention = retention if retention is not None else Retention.configure()
        self._add_result = redis.register_script(_ADD_RESULT)
        self._add_result_logged = redis.register_script(_ADD_RESULT_LOGGED)
        self._enqueue_tool = redis.register_script(_ENQUEUE_TOOL)
        self._restart_stream = redis.register_script(_RESTART_STREAM)
        self._seal = redis.register_script(_SEAL)
        self._expire = redis.register_script(_EXPIRE)
        self._expire_all = redis.register_script(_EXPIRE_ALL)
        self._note_tool = redis.register_script(_NOTE_TOOL)
        self._block = redis.register_script(_BLOCK)
        self._end_run = redis.register_script(_END_RUN)
        self._chain_add = redis.register_script(_CHAIN_ADD)
        self._chain_next = redis.register_script(_CHAIN_NEXT)
        self._hold = redis.register_script(_HOLD)
        self._start_tool = redis.register_script(_START_TOOL)
        self._cancel_tool = redis.register_script(_CANCEL_TOOL)
        self._pause = redis.register_script(_PAUSE)
        self._release = redis.register_script(_RELEASE)
        self._pend = redis.register_script(_PEND)
        self._open_stream = redis.register_script(_OPEN_STREAM)
        self._keep_block = redis.register_script(_KEEP_BLOCK)
        self._take_over = redis.register_script(_TAKE_OVER)
        self._end_stream = redis.register_script(_END_STREAM)

    # ------------------------------------------------------------ keys

    @staticmethod
    def run_key(run_id: str) -> str:
        return run_key(run_id)

    @staticmethod
    def turn_key(run_id: str, turn: int) -> str:
        return f"inc:turn:{run_id}:{turn}"

    @staticmethod
    def results_key(run_id: str, turn: int) -> str:
        return f"inc:turn:{run_id}:{turn}:results"

    @staticmethod
    def blocks_key(run_id: str, turn: int) -> str:
        return f"inc:turn:{run_id}:{turn}:blocks"

    # ------------------------------------------------------------ runs

    async def create_run(
        self,
        run_id: str,
        config: dict[str, Any],
        messages: list[dict[str, Any]],
        *,
        record: dict[str, str] | None = None,
    ) -> None:
        """Store a new run: its config, state ``running``, its messages; ``record`` adds fields."""
        key = self.run_key(run_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    **self.retention.record(),
                    **(record or {}),
                    "config": json.dumps(config),
                    "state": "running",
                    "created_at": repr(time.time()),
                },
            )
            pipe.set(f"{key}:messages", json.dumps(messages))
            pipe.expire(key, self.TTL_S)
            pipe.expire(f"{key}:messages", self.TTL_S)
            await pipe.execute()

    async def run(self, run_id: str) -> RunRecord | None:
        return _run_record(await _a(self.redis.hgetall(self.run_key(run_id))))

    async def end_run(self, run_id: str, state: str, reason: str) -> bool:
        """Move a running run to its final state (and its keys under its retention: ``retain``). False
        if it had already ended."""
        args = [state, reason, repr(time.time()), self.retention.record()["retention_s"]]
        ended = _s(await self._end_run(keys=[self.run_key(run_id)], args=args))
        if ended in (None, "0"):
            return False
        if ended != "off":
            await self.retain(run_id, int(str(ended)))
        return True

    async def retention_of(self, run_id: str) -> tuple[Retention, str | None]:
        """The run's retention (this store's for a run recorded without one) and its queue."""
        fields = ("retention_s", "trim_after_s", "queue")
        values = await _a(self.redis.hmget(self.run_key(run_id), list(fields)))
        record = {k: _s(v) for k, v in zip(fields, values, strict=True) if v is not None}
        return Retention.of_run(record, self.retention), record.get("queue") or None

    async def run_keys(self, run_id: str) -> tuple[list[str], list[str]]:
        """The run's own keys, as (kept for readers of a finished run, needed only while it runs)."""
        run = await self.run(run_id)
        turn = run.turn if run is not None else 0
        tools = [str(_s(t)) for t in await _a(self.redis.hkeys(self._run_part(run_id, "tools")))]
        kept = [
            self.run_key(run_id),
            f"{self.run_key(run_id)}:messages",
            self._run_part(run_id, "tools"),
            *(self.results_key(run_id, n) for n in range(turn + 1)),
            f"inc:events:{run_id}",
            f"inc:milestones:{run_id}",
        ]
        working = [
            *(self._run_part(run_id, part) for part in self.WORKING_PARTS),
            *(self.turn_key(run_id, n) for n in range(turn + 2)),  # the next one may have a record
            *(f"inc:exec:{run_id}:{tool_id}" for tool_id in tools),
            control_key(run_id),
        ]
        return kept, working

    async def retain(self, run_id: str, ttl_s: int) -> None:
        """Every key of the run expires ``ttl_s`` from now (its record has been, by ``end_run``)."""
        kept, working = await self.run_keys(run_id)
        await self._expire_all(keys=[*kept, *working], args=[ttl_s])

    async def trim_run(self, run_id: str) -> int | None:
        """Mark a finished run trimmed and drop its working records (see the module docstring); what
        stays gets the record's remaining TTL. Returns that TTL (-1: none), or None when the run is
        gone or still running. The event log is ``EventLog.trim``'s, after this."""
        run = await self.run(run_id)
        if run is None or run.state in ("", "running"):
            return None
        kept, working = await self.run_keys(run_id)
        key = self.run_key(run_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "trimmed", "1")
            pipe.delete(*working)
            pipe.ttl(key)
            ttl = int((await pipe.execute())[-1])
        if ttl > 0:
            await self._expire_all(keys=kept[1:], args=[ttl])
        return ttl

    # ------------------------------------------------------------ tool inputs

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
        return await self.open_stream(run_id, turn) == "claimed"

    async def open_stream(self, run_id: str, turn: int, generation: int = 0, *, hold: bool = False) -> str:
        """May this stream job make its turn's request? Decided in one step: ``"claimed"`` (yes: the
        first caller; the run's ``turn`` is this one from now on, the turn a cancel blocks), ``"taken"``
        (the stream was started before), ``"stale"`` (a later generation of this job exists) or, with
        ``hold``, ``"paused"`` (the run is paused: its sent continuation is now pending, for resume)."""
        pending = json.dumps({"turn": turn, "trigger": "stream", "sent": True})
        outcome = await self._open_stream(
            keys=[self.run_key(run_id), self.turn_key(run_id, turn)],
            args=[
                repr(time.time()),
                str(turn),
                str(generation),
                "1" if hold else "0",
                pending,
                str(self.TTL_S),
            ],
        )
        return str(_s(outcome))

    async def next_stream_generation(self, run_id: str, turn: int) -> int:
        """A new generation of the turn's stream job (``resume_run`` re-enqueues it): older ones are stale."""
        return int(await _a(self.redis.hincrby(self.turn_key(run_id, turn), "stream_generation", 1)))

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

    async def add_result_logged(
        self,
        run_id: str,
        turn: int,
        result: ToolResult,
        log: EventLog,
        event: RunEventModel,
        before: list[RunEventModel] | tuple[()] = (),
    ) -> tuple[str, str | None]:
        """Record a result and append its event in one step: ``("continue" | "ok", entry id)``, or
        ``("dup", None)`` (another result was first: nothing is appended), or ``("mine", None)`` (this
        very result was recorded before: a retried write), or ``("continue", None)`` likewise, when it
        was the result that completed the turn. ``before``: events appended first, whatever the
        outcome (the tool's progress, still pending)."""
        leading: list[str | int] = []
        for earlier in before:
            leading += log.entry_args(earlier)
        raw = await self._add_result_logged(
            keys=[
                self.turn_key(run_id, turn),
                self.results_key(run_id, turn),
                *log.keys(run_id),
                self._run_part(run_id, "inputs"),
            ],
            args=[
                result.tool_use_id,
                result.to_json(),
                repr(time.time()),
                str(self.TTL_S),
                len(before),
                *leading,
                *log.entry_args(event),
            ],
        )
        outcome, entry_id = (str(_s(item)) for item in raw)
        return outcome, entry_id or None

    async def enqueue_tool_logged(
        self,
        job: ToolJob,
        log: EventLog,
        event: RunEventModel,
        *,
        args: dict[str, Any] | None = None,
        ready: tuple[int, dict[str, Any], RunEventModel] | None = None,
        waiting: RunEventModel | None = None,
        before: list[RunEventModel] | tuple[()] = (),
    ) -> str:
        """Enqueue a tool job with its ``tool_enqueued`` event, in one step, unless the run is paused:
        ``"enqueued"``, ``"exists"`` (a job with its id exists: nothing was written) or ``"paused"``
        (nothing was written: the caller holds the job).

        In the same step, first: ``ready`` (block index, block record, its ``tool_ready`` event): the
        stream's own step when the call became ready (``keep_block``, the event, the turn marked
        dispatched), ``"superseded"`` (nothing written) when the stream was taken over; ``args``: the
        call's input, stored until its result is recorded; ``waiting`` (its ``tool_waiting`` event):
        the job takes its place behind the earlier calls with its concurrency key (``chain_add``),
        and when there are any, ``"waiting"``: the event is written, the job is not enqueued.
        ``before``: events written first (the stream's pending ones), unless it was superseded."""
        arq_keys, arq_args = tool_enqueue_args(self.redis, job)  # type: ignore[arg-type]
        events, milestones, _run = log.keys(job.run_id)
        entries: list[str | int] = []
        for earlier in before:
            entries += log.entry_args(earlier)
        index, record, chained = "", "", ""
        if ready is not None:
            index, record = str(ready[0]), json.dumps(ready[1])
            entries += log.entry_args(ready[2])
        if waiting is not None:
            assert job.concurrency_key is not None, "only a call with a concurrency key waits"
            chained = json.dumps(job.to_dict())
            entries += log.entry_args(waiting)
        entries += log.entry_args(event)
        raw = await self._enqueue_tool(
            keys=[
                self.run_key(job.run_id),
                *arq_keys,
                events,
                milestones,
                self.turn_key(job.run_id, job.turn),
                self.blocks_key(job.run_id, job.turn),
                self._run_part(job.run_id, "inputs"),
                self.chain_key(job.run_id, job.concurrency_key or ""),
            ],
            args=[
                *arq_args,
                str(self.TTL_S),
                job.tool_use_id,
                "" if args is None else json.dumps(args, separators=(",", ":")),
                index,
                record,
                chained,
                len(before),
                *entries,
            ],
        )
        return str(_s(raw[0]))

    async def mark_dispatched(self, run_id: str, turn: int) -> None:
        """A call of this turn is being handed to a worker: the turn must never be requested again."""
        await _a(self.redis.hset(self.turn_key(run_id, turn), "dispatched", "1"))

    async def restart_stream(self, run_id: str, turn: int, *, release: bool = False) -> bool:
        """Ask the turn again (``release``: let another job ask it), if nothing of it was dispatched; the
        earlier attempt's results (refusals) are dropped. False when it may not be asked again."""
        done = await self._restart_stream(
            keys=[self.turn_key(run_id, turn), self.results_key(run_id, turn), self.blocks_key(run_id, turn)],
            args=["release" if release else "restart", repr(time.time())],
        )
        return bool(done)

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

    async def keep_block(self, run_id: str, turn: int, index: int, record: dict[str, Any]) -> bool:
        """Keep a content block of the turn's message that stopped (``record``: the block as the full
        message has it, with its status). False once the stream's end was recorded, or another job took
        the stream over: this stream must stop."""
        kept = await self._keep_block(
            keys=[self.turn_key(run_id, turn), self.blocks_key(run_id, turn)],
            args=[str(index), json.dumps(record), str(self.TTL_S)],
        )
        return bool(kept)

    async def take_over_stream(self, run_id: str, turn: int) -> tuple[str, Any]:
        """The turn's stream was started by a job that is gone: ``("done", None)`` (the turn is sealed or
        ended), ``("asked", None)`` (nothing was dispatched: it may be asked again), ``("message",
        stop_reason)`` (the stream reached message_stop, and did not ask for tools) or ``("salvage",
        {index: record})``: the stream is the caller's from now on (its first job keeps no block more),
        with the blocks it completed. A second caller gets the same blocks."""
        raw = await self._take_over(
            keys=[self.turn_key(run_id, turn), self.blocks_key(run_id, turn)], args=[repr(time.time())]
        )
        items = [str(_s(item)) for item in raw]
        outcome = items[0]
        if outcome == "message":
            return outcome, items[1]
        if outcome != "salvage":
            return outcome, None
        pairs = items[1:]
        return outcome, {int(pairs[i]): json.loads(pairs[i + 1]) for i in range(0, len(pairs), 2)}

    async def end_stream(
        self,
        run_id: str,
        turn: int,
        messages: list[dict[str, Any]],
        *,
        who: str,
        stop_reason: str | None,
        expected: list[str] | None = None,
        names: dict[str, str] | None = None,
        deadline: float = 0.0,
    ) -> str:
        """Record the end of the turn's stream, in one step: the conversation with its assistant message,
        and (``expected`` given: the message asks for tools) the seal. ``who``: ``"message"`` (the stream
        job, at message_stop) or ``"salvage"`` (the job that took the stream over). ``"taken"`` when the
        other one recorded it; else the seal's ``"continue"``, ``"ok"`` or ``"already"`` (``"ok"``
        without ``expected``)."""
        ids = expected or []
        outcome = await self._end_stream(
            keys=[
                self.turn_key(run_id, turn),
                self.results_key(run_id, turn),
                f"{self.run_key(run_id)}:messages",
                self.blocks_key(run_id, turn),
            ],
            args=[
                json.dumps(ids),
                str(len(ids)),
                repr(deadline),
                repr(time.time()),
                who,
                json.dumps(messages),
                str(self.TTL_S),
                json.dumps(names or {}),
                stop_reason or "",
                "1" if expected is not None else "0",
            ],
        )
        return str(_s(outcome))

    async def expire_turn(
        self, run_id: str, turn: int, missing: list[ToolResult], *, seen_deadline: str | None = None
    ) -> str:
        """The deadline passed: fill what is missing and continue. ``"continue"`` for exactly one caller.

        Not while the run is paused: ``"held"`` (the first time in this pause) or ``"paused"``, and
        nothing is filled in. ``seen_deadline``: the turn's deadline as the caller read it; ``"moved"``
        if it is another one now (a resume pushed it). Otherwise ``"already"`` or ``"unsealed"``."""
        args: list[str] = [repr(time.time()), seen_deadline or ""]
        for result in missing:
            args += [result.tool_use_id, result.to_json()]
        outcome = await self._expire(
            keys=[self.turn_key(run_id, turn), self.results_key(run_id, turn), self.run_key(run_id)],
            args=args,
        )
        return str(_s(outcome))

    async def block_continuation(
        self, run_id: str, turn: int, status: str, reason: str, *, by_stream: bool = False
    ) -> bool:
        """This turn must never continue (its stream failed, or the run was cancelled). ``by_stream``:
        the turn's stream job asks, and is refused once another job salvaged its stream (``stream_end``
        says ``salvage``)."""
        blocked = await self._block(
            keys=[self.turn_key(run_id, turn)], args=[status, reason, "1" if by_stream else "0"]
        )
        return int(blocked) == 1

    async def count_execution(self, run_id: str, tool_use_id: str) -> int:
        key = f"inc:exec:{run_id}:{tool_use_id}"
        count = int(await _a(self.redis.incr(key)))
        await self.redis.expire(key, self.TTL_S)
        return count

    async def executions(self, run_id: str, tool_use_id: str) -> int:
        raw = await self.redis.get(f"inc:exec:{run_id}:{tool_use_id}")
        return int(raw) if raw else 0

    # ------------------------------------------------------------ concurrency keys

    @staticmethod
    def chain_key(run_id: str, key: str) -> str:
        return f"inc:chain:{run_id}:{key}"

    async def chain_add(self, run_id: str, key: str, job: dict[str, Any]) -> bool:
        """Queue a job behind earlier ones with the same key. True if it may run now (it is the head)."""
        length = await self._chain_add(keys=[self.chain_key(run_id, key)], args=[json.dumps(job)])
        return int(length) == 1

    async def chain_next(self, run_id: str, key: str, tool_use_id: str) -> dict[str, Any] | None:
        """The head finished: drop it and return the next job with this key, if any."""
        raw = await self._chain_next(keys=[self.chain_key(run_id, key)], args=[tool_use_id])
        if not raw:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    # ------------------------------------------------------------ control: pause, resume, cancel

    def _run_part(self, run_id: str, part: str) -> str:
        return f"{self.run_key(run_id)}:{part}"

    async def note_tool(
        self,
        run_id: str,
        turn: int,
        tool_use_id: str,
        name: str,
        log: EventLog | None = None,
        event: RunEventModel | None = None,
    ) -> None:
        """Remember that a client tool_use block of this turn exists (what ``cancel_tool`` looks up);
        with ``log`` and ``event`` (its ``tool_input_started``), the event is appended in the same step,
        so whoever learns the id from the log finds the block here."""
        entries = log.entry_args(event) if log is not None and event is not None else []
        await self._note_tool(
            keys=[self._run_part(run_id, "tools"), *(log.keys(run_id) if log is not None else [])],
            args=[tool_use_id, json.dumps({"turn": turn, "name": name}), str(self.TTL_S), *entries],
        )

    async def tool_info(self, run_id: str, tool_use_id: str) -> dict[str, Any] | None:
        """``{"turn", "name"}`` of a tool_use block of the run, or None if the run has none with this id."""
        raw = await _a(self.redis.hget(self._run_part(run_id, "tools"), tool_use_id))
        if not raw:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    async def is_paused(self, run_id: str) -> bool:
        """A cheap look at the flag; whoever acts on "paused" re-checks it atomically (``hold_if_paused``)."""
        return _s(await _a(self.redis.hget(self.run_key(run_id), "paused"))) == "1"

    async def hold_if_paused(self, run_id: str, job: dict[str, Any]) -> bool:
        """If the run is paused (and running), keep the job for ``release``; True when it was held.

        A job of generation n > 0 (re-held from inside ``run_tool``) also becomes the only generation of
        its call that may run (``start_tool`` answers ``"stale"`` to older ones)."""
        held = await self._hold(
            keys=[
                self.run_key(run_id),
                self._run_part(run_id, "held"),
                self._run_part(run_id, "generations"),
            ],
            args=[json.dumps(job), str(self.TTL_S), str(job["tool_use_id"]), str(job.get("generation") or 0)],
        )
        return bool(held)

    async def start_tool(
        self, run_id: str, turn: int, tool_use_id: str, generation: int, token: str = ""
    ) -> str:
        """What a tool job should do now, decided in one step; when it says run, the start is counted
        (once per ``token``, the job's try: asked again with the same token, it gives the same attempt).

        ``"done"`` (a result is recorded), ``"stale"`` (a later generation of this job exists), ``"ended"``
        (the run ended or the turn was blocked), ``"cancelled"`` (a cancel was asked before it started),
        ``"paused"`` (hold the job: ``hold_if_paused``), or the attempt number.
        """
        return (await self.begin_tool(run_id, turn, tool_use_id, generation, token)).verdict

    async def begin_tool(
        self, run_id: str, turn: int, tool_use_id: str, generation: int, token: str = ""
    ) -> ToolStart:
        """``start_tool``, and, when it says run, what the job needs read in the same step: the run's
        record and the call's stored input (None once its result is recorded)."""
        raw = await self._start_tool(
            keys=[
                self.run_key(run_id),
                self.turn_key(run_id, turn),
                self.results_key(run_id, turn),
                f"inc:exec:{run_id}:{tool_use_id}",
                self._run_part(run_id, "cancels"),
                self._run_part(run_id, "generations"),
                self._run_part(run_id, "starts"),
                self._run_part(run_id, "inputs"),
            ],
            args=[tool_use_id, str(generation), str(self.TTL_S), token],
        )
        if not isinstance(raw, list):
            return ToolStart(str(_s(raw)))
        attempt, flat, stored = raw
        record = _run_record(dict(zip(flat[::2], flat[1::2], strict=True)))
        return ToolStart(str(_s(attempt)), record, json.loads(stored) if stored else None)

    async def cancel_tool(self, run_id: str, turn: int, tool_use_id: str, reason: str) -> str:
        """Ask a tool to stop: ``"finished"`` (it has a result), ``"signalled"`` (it has started: tell it),
        or ``"cancelled"`` (it has not: it never will; record its result)."""
        outcome = await self._cancel_tool(
            keys=[
                self.results_key(run_id, turn),
                f"inc:exec:{run_id}:{tool_use_id}",
                self._run_part(run_id, "cancels"),
                self.run_key(run_id),
            ],
            args=[tool_use_id, reason, str(self.TTL_S)],
        )
        return str(_s(outcome))

    async def pause(self, run_id: str) -> int | None:
        """Set the paused flag (and ``paused_at``) of a running run; its current turn, or None if it is
        not running or already paused."""
        turn = int(await self._pause(keys=[self.run_key(run_id)], args=[repr(time.time())]))
        return turn if turn >= 0 else None

    async def release(
        self, run_id: str, *, resume: bool
    ) -> tuple[dict[str, Any] | None, int, list[dict[str, Any]]] | None:
        """Clear the paused flag; take the pending continuation and the held jobs. With ``resume``, only
        from a running, paused run (else None), and the deadline of its turn, if sealed and not continued,
        moves forward by the time it was sealed and paused; otherwise (the run ended) whatever its state."""
        while True:
            turn = _s(await _a(self.redis.hget(self.run_key(run_id), "turn"))) or "0"
            raw = await self._release(
                keys=[
                    self.run_key(run_id),
                    self._run_part(run_id, "held"),
                    self.turn_key(run_id, int(turn)),
                ],
                args=["resume" if resume else "end", repr(time.time()), turn],
            )
            if not isinstance(raw, bytes | str):  # 'retry': the run's turn moved on since the read
                break
        if raw is None:
            return None
        pending_raw, turn, *jobs = (str(_s(item)) for item in raw)
        pending: dict[str, Any] | None = json.loads(pending_raw) if pending_raw else None
        return pending, int(turn), [json.loads(job) for job in jobs]

    async def pend_continuation(self, run_id: str, next_turn: int, trigger: str) -> str:
        """The turn before ``next_turn`` completed: may its continuation be sent now? ``"go"`` (yes, and
        only this caller hears it: the turn is marked ``continue_sent``), ``"sent"`` (someone sent it
        already), ``"pending"`` (the run is paused: kept for resume), ``"waiting"`` (paused, and a
        continuation is pending already), ``"started"`` (paused, and the next turn already started) or
        ``"ended"``."""
        outcome = await self._pend(
            keys=[
                self.run_key(run_id),
                self.turn_key(run_id, next_turn - 1),
                self.turn_key(run_id, next_turn),
            ],
            args=[json.dumps({"turn": next_turn, "trigger": trigger}), repr(time.time())],
        )
        return str(_s(outcome))
