"""``GET /v1/runs/{id}/events``: the run's log as Server-Sent Events, resumable without gap or duplicate.

Each log entry goes out as ``id: <stream id>`` / ``event: <kind>`` / ``data: <the event's JSON>``. A
client that reconnects with ``Last-Event-ID`` (or ``?after=``) gets exactly the entries after that id.
When entries after its id were trimmed from the log, it first gets ``event: snapshot``: the run's state
folded from everything (milestones included) up to the snapshot's own id, which is where the stream
then resumes. Once the run has ended and no tool is still to report, ``event: end`` closes the stream,
so clients know not to reconnect.

A watch token (meant for a browser) gets ``run_started`` redacted (``public_event``): its config keeps
the model, ``max_tokens`` and the turn limits, and drops everything else (the server's workspace path,
the system prompt, tool definitions, tags and any other server-side option).

Order of work, per connection: subscribe to the run's live feed, then read history from the log, then
take live batches, dropping any id already sent. Comment heartbeats keep proxies from closing an idle
stream; a client too slow to take a write within ``send_timeout_s`` or too far behind the feed is cut
off (it can reconnect and catch up from the log). A disconnect only unsubscribes: it never cancels the
run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..adapters._eventlog import HIGH_VOLUME_KINDS, EventLog, compare_ids, parse_id
from ..pipeline._view import RunView
from ._fanout import Batch, Entry, Subscriber, SubscriberCutOff, WatchFailed, entries_from

if TYPE_CHECKING:
    from ._app import _State

__all__ = ["build_view", "event_stream", "public_event"]

logger = logging.getLogger("incremental.service")

_HISTORY_BATCH = 500
_PUBLIC_REQUEST = ("model", "max_tokens")
_PUBLIC_OPTIONS = ("max_turns", "turn_timeout_s")


def public_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a watch token may read it: ``run_started`` with its config cut to what a page shows."""
    if event.get("kind") != "run_started":
        return event
    config = event.get("config")
    config = config if isinstance(config, dict) else {}
    request = config.get("request")
    request = request if isinstance(request, dict) else {}
    public: dict[str, Any] = {"request": {k: request[k] for k in _PUBLIC_REQUEST if k in request}}
    public.update({k: config[k] for k in _PUBLIC_OPTIONS if k in config})
    public["redacted"] = True
    return {**event, "config": public}


async def build_view(log: EventLog, run_id: str) -> RunView:
    """The run's state from its log: the milestones older than what the main log still holds, then the
    whole main log (so a run whose log was trimmed still shows every tool)."""
    view = RunView(run_id)
    entries = await log.entries(run_id)  # first: trimming that happens meanwhile cannot open a gap
    first = entries[0][0] if entries else None
    for entry_id, event in await log.milestones(run_id, upto=f"({first}" if first else "+"):
        view.apply(event, entry_id)
    for entry_id, event in entries:
        view.apply(event, entry_id)
    return view


def _message(event: str, data: dict[str, Any], entry_id: str | None = None) -> bytes:
    head = f"id: {entry_id}\n" if entry_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Sent:
    """What one connection has sent: the last id, and what it takes to know the run is settled."""

    def __init__(self, run_id: str, last: str, counter: Any, *, redact: bool = False) -> None:
        self.last = last
        self.counter = counter  # events sent, across connections (a prometheus Counter)
        self.tracker = RunView(run_id)
        self.redact = redact  # a watch token's connection: run_started goes out redacted
        self.settled = False  # the tracker's, as of the last entry taken

    @property
    def last(self) -> str:
        return self._last

    @last.setter
    def last(self, entry_id: str) -> None:
        self._last = entry_id
        self._last_t = parse_id(entry_id)

    def take(self, entries: list[Entry]) -> bytes:
        """The SSE bytes of the entries not sent yet, as one write (one write per batch, not per event)."""
        chunks = []
        applied = False
        for entry in entries:
            entry_t = parse_id(entry.id)
            if entry_t <= self._last_t:
                continue  # already sent from history
            if entry.event.get("kind") not in HIGH_VOLUME_KINDS:
                self.tracker.apply(entry.event, entry.id)
                applied = True
            self._last, self._last_t = entry.id, entry_t
            if self.redact and entry.event.get("kind") == "run_started":
                chunks.append(_message("run_started", public_event(entry.event), entry.id))
            else:
                chunks.append(entry.sse)
        if applied:
            self.settled = self.tracker.settled
        if chunks:
            self.counter.inc(len(chunks))
        return b"".join(chunks)

    def take_batches(self, batches: list[Batch]) -> bytes:
        """As ``take``, for live batches, up to the one that settles the run: a batch wholly after the
        last id sent goes out as its one precomputed block, with no work per entry but its milestones."""
        chunks = []
        n = 0
        for batch in batches:
            if batch.last <= self._last_t:
                continue  # all of it sent already, from history
            if batch.first <= self._last_t or (self.redact and batch.has_run_started):
                chunk = self.take(batch.entries)  # the hand-over from history, or a redaction
                if chunk:
                    chunks.append(chunk)
            else:
                for entry in batch.milestones:
                    self.tracker.apply(entry.event, entry.id)
                if batch.milestones:
                    self.settled = self.tracker.settled
                self._last, self._last_t = batch.last_id, batch.last
                chunks.append(batch.sse)
                n += len(batch)
            if self.settled:
                break  # what follows the run's end in the feed is not this stream's
        if n:
            self.counter.inc(n)
        return b"".join(chunks)


async def _events(
    state: _State, run_id: str, after: str | None, redact: bool = False
) -> AsyncIterator[bytes]:
    log = state.log
    metrics = state.metrics
    sub: Subscriber | None = None
    metrics.sse_open.inc()
    try:
        sub = await state.fanout.subscribe(run_id)
        sent = _Sent(run_id, after or "0-0", metrics.sse_events, redact=redact)
        head = await log.first(run_id)
        # A run's log always starts with run_started: if the oldest entry kept is anything else, the
        # cap has trimmed entries away, and a client whose offset is older has a gap to be told about.
        trimmed = head is not None and head[1].get("kind") != "run_started"
        if trimmed and head is not None and compare_ids(sent.last, head[0]) < 0:
            # Entries after the client's offset are gone: send the whole state, then go on from its id.
            view = await build_view(log, run_id)
            sent.tracker = view
            sent.last = view.last_id or sent.last
            metrics.snapshots.inc()
            yield _message("snapshot", view.to_dict(), sent.last)
        elif sent.last != "0-0":
            for entry_id, event in await log.milestones(run_id, upto=sent.last):
                sent.tracker.apply(event, entry_id)
        while True:  # history, from the log itself
            raw = await log.read_raw(run_id, sent.last, count=_HISTORY_BATCH)
            chunk = sent.take(entries_from(raw))
            if chunk:
                yield chunk
            if len(raw) < _HISTORY_BATCH:
                break
        sent.settled = sent.tracker.settled  # a snapshot, or milestones, may have settled it already
        while True:  # live, from the run's feed: every batch waiting goes out as one write
            if sent.settled:
                yield _message("end", {"state": sent.tracker.state})
                return
            chunk = sent.take_batches(await sub.next_batches())
            if chunk:
                yield chunk
    except SubscriberCutOff:
        metrics.sse_cut_off.inc()
    except (WatchFailed, RedisError) as exc:
        # Redis went away: the response ends; the client reconnects (with its Last-Event-ID) later.
        logger.warning("event stream of run %s ended: %s: %s", run_id, type(exc).__name__, exc)
    finally:
        if sub is not None:
            state.fanout.unsubscribe(sub)
        metrics.sse_open.dec()


def event_stream(
    state: _State, run_id: str, after: str | None, *, redact: bool = False
) -> EventSourceResponse:
    """The run's events as SSE; ``redact`` for a watch token (see ``public_event``)."""
    config = state.config
    return EventSourceResponse(
        _events(state, run_id, after, redact),
        ping=config.heartbeat_s,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        send_timeout=config.send_timeout_s,
        sep="\n",
        headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"},
    )
