"""The HTTP service: start runs, read their state, watch them live over SSE, steer them, and the page.

Routes (every ``/v1`` route takes ``Authorization: Bearer <token>``; see ``_auth``)::

    POST /v1/runs                  start a run; answers its id, URLs and a watch token at once (201)
    GET  /v1/runs                  the caller's runs, newest first
    GET  /v1/runs/{id}             the run's state: every tool's status and timings, each turn's text
    GET  /v1/runs/{id}/events      the run's event log as SSE; resumable with Last-Event-ID
    GET  /v1/runs/{id}/calls       every tool call's whole input and result, once stored (the page)
    POST /v1/runs/{id}/cancel      the whole run, or one tool with {"tool_use_id": ...}
    POST /v1/runs/{id}/pause       ready tools wait and the run does not continue ...
    POST /v1/runs/{id}/resume      ... until this
    GET  /v1/stats                 the metrics as JSON, for the page's panel
    GET  /v1/demo                  a ready-made request for the demo recording (serve --demo)
    GET  /v1/schema/events         the JSON Schema of the log's events (no token needed)
    GET  /metrics                  Prometheus
    GET  /                         the dashboard; /static/* its files
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..adapters._eventlog import EventLog, parse_id
from ..adapters._metrics import MetricsStore
from ..adapters._store import RunRecord, _a
from ..events import RUN_FINAL_KINDS
from ..exceptions import RequestError
from ..pipeline import cancel_run, cancel_tool, pause_run, resume_run
from ..pipeline._run import MAX_REQUEST_DEPTH, check_request, new_run_id
from ..runner import Runner
from ..tools import ToolResult
from ._auth import Auth, Principal
from ._config import ServiceConfig
from ._errors import ApiError, exception_handlers
from ._events import build_view, event_stream
from ._fanout import Fanout
from ._guard import json_nesting_ok
from ._metrics import ServiceMetrics
from ._requests import CreateRun, describe_validation_error

__all__ = ["create_app"]

_STATIC = resources.files("incremental") / "static"
_FEED_BLOCK_S = 5.0


class _State:
    """What the routes share; made at startup, closed at shutdown."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.auth = Auth(config.tokens)
        self.metrics = ServiceMetrics()
        self.saved_by_run: dict[str, tuple[float, float]] = {}  # ended runs' (vs sequential, vs parallel)

    async def start(self) -> None:
        self._own_runner = self.config.runner is None
        if self.config.runner is None:
            self.runner = Runner(
                tools=self.config.tools,
                redis_url=self.config.redis_url,
                workers=0,
                retention_s=self.config.retention_s,
                trim_after_s=self.config.trim_after_s,
            )
            await self.runner.open()
        else:
            self.runner = self.config.runner
        self.pool = self.runner.pool
        self.services = self.runner._services()
        self.log = EventLog(self.pool, **self.config.event_log)
        self.services.events = self.log
        # The feeds' blocking reads get their own connections with a read timeout: a half-open
        # connection (a partition without a reset) then fails the feed instead of hanging its watchers.
        self.feed_redis = Redis.from_url(
            self.config.redis_url, socket_timeout=_FEED_BLOCK_S + 10, socket_keepalive=True
        )
        self.fanout = Fanout(
            EventLog(self.feed_redis, metrics=False),
            max_pending=self.config.max_pending_events,
            block_ms=int(_FEED_BLOCK_S * 1000),
        )
        self.metrics_store = MetricsStore(self.pool)

    async def stop(self) -> None:
        await self.fanout.aclose()
        await self.feed_redis.aclose()
        if self._own_runner:
            await self.runner.aclose()


def _state(request: Request) -> _State:
    state: _State = request.app.state.inc
    return state


async def _json_body(request: Request, limit: int) -> Any:
    if int(request.headers.get("content-length") or 0) > limit:
        raise ApiError(413, f"request body over {limit} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body over {limit} bytes")
    if not body.strip():
        return {}
    if not json_nesting_ok(body, MAX_REQUEST_DEPTH):  # before parsing: a deep body must not recurse
        raise ApiError(400, f"request body nests deeper than {MAX_REQUEST_DEPTH} levels")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None


async def _caller(request: Request) -> tuple[Principal, str]:
    state = _state(request)
    token = state.auth.bearer(request)
    principal = state.auth.principal(token)
    if principal is not None:
        return principal, token
    run_id = Auth.watch_run(token)
    if run_id is not None:  # a watch token is only as good as the digest its run stored
        stored = await _a(state.pool.hget(state.services.store.run_key(run_id), "watch_sha256"))
        if Auth.watch_matches(token, stored.decode() if isinstance(stored, bytes) else stored):
            return Principal("watch", run_id), token
    raise ApiError(401, "unknown token")


async def _run_for(request: Request, *, write: bool = False) -> RunRecord:
    """The run named in the path, if this caller may see it (and steer it, with ``write``)."""
    state = _state(request)
    principal, _ = await _caller(request)
    run_id = request.path_params["run_id"]
    run = await state.services.store.run(run_id)
    request.state.principal = principal
    if principal.read_only:
        if principal.run_id != run_id:
            raise ApiError(403, "this watch token is for another run")
        if run is None:
            raise ApiError(404, f"no run {run_id!r} (it may have expired)")
        if write:
            raise ApiError(403, "a watch token can only read its run; steering it needs the owner's token")
        return run
    if run is None:
        raise ApiError(404, f"no run {run_id!r} (it may have expired)")
    if run.get("owner") != principal.name:
        raise ApiError(403, f"run {run_id!r} belongs to another token")
    return run


# ------------------------------------------------------------------------------------------- runs


async def create_run(request: Request) -> Response:
    state = _state(request)
    principal, _ = await _caller(request)
    if principal.read_only:
        raise ApiError(403, "a watch token cannot start runs")
    try:
        body = CreateRun.model_validate(await _json_body(request, state.config.max_body_bytes))
    except ValidationError as exc:
        raise ApiError(400, describe_validation_error(exc)) from None
    cfg = state.config
    toolset = body.toolset or cfg.toolset
    if toolset is None and len(cfg.tools) == 1:
        [toolset] = cfg.tools
    if toolset not in cfg.tools:
        raise ApiError(400, f"toolset: no tool set {toolset!r}; this service has {sorted(cfg.tools)}")
    fields = body.request()
    fields.setdefault("model", cfg.default_model)
    fields.setdefault("max_tokens", cfg.default_max_tokens)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    options: dict[str, Any] = {
        "toolset": toolset,
        "max_turns": body.limits.max_turns,
        "turn_timeout_s": body.limits.turn_timeout_s,
        "simulate_s": cfg.simulate_s,
        "tags": {**(body.tags or {}), "owner": principal.name},
    }
    try:
        check_request(messages, dict(fields), **options)  # nothing is made for a bad request
    except RequestError as exc:
        raise ApiError(400, str(exc)) from None
    run_id = new_run_id()
    workspace = None
    if cfg.workspace_root is not None:
        path = Path(cfg.workspace_root) / run_id
        path.mkdir(parents=True, exist_ok=True)
        if cfg.prepare_workspace is not None:
            cfg.prepare_workspace(path)
        workspace = str(path)
    watch_token, watch_sha = Auth.new_watch_token(run_id)
    now = time.time()
    try:
        await state.runner.start(
            messages,
            run_id=run_id,
            _record={"owner": principal.name, "watch_sha256": watch_sha, "model": str(fields["model"])},
            workspace=workspace,
            **options,
            **fields,
        )
    except RequestError as exc:
        raise ApiError(400, str(exc)) from None
    await _index_run(state, principal.name, run_id, now)
    url = f"/v1/runs/{run_id}"
    return JSONResponse(
        {
            "id": run_id,
            "state": "running",
            "url": url,
            "events_url": f"{url}/events",
            "watch_token": watch_token,
        },
        status_code=201,
        headers={"Location": url},
    )


_INDEX_SWEEP = 20  # index entries looked at per new run, oldest first


async def _index_run(state: _State, owner: str, run_id: str, now: float) -> None:
    """Add a run to its owner's index (``inc:runs:{owner}``, scored by creation time) and keep the index
    in step with the runs' retention: of the entries created before any run's record could have
    expired (a finished run's lives ``retention_s`` past its end, a running one's ``TTL_S`` past its
    last write), the oldest few whose record is gone are dropped. The index itself expires when its
    owner has started nothing for that long."""
    key = f"inc:runs:{owner}"
    store = state.services.store
    keep = store.retention.ttl_s
    horizon = min(store.TTL_S, keep) if keep is not None else store.TTL_S
    async with state.pool.pipeline(transaction=False) as pipe:
        pipe.zadd(key, {run_id: now})
        pipe.expire(key, max(store.TTL_S, keep or 0))
        pipe.zrangebyscore(key, "-inf", now - horizon, start=0, num=_INDEX_SWEEP)
        *_, old = await pipe.execute()
    if not old:
        return
    async with state.pool.pipeline(transaction=False) as pipe:
        for member in old:
            pipe.exists(store.run_key(member.decode() if isinstance(member, bytes) else str(member)))
        alive = await pipe.execute()
    gone = [member for member, found in zip(old, alive, strict=True) if not found]
    if gone:
        await state.pool.zrem(key, *gone)


async def list_runs(request: Request) -> Response:
    state = _state(request)
    principal, _ = await _caller(request)
    if principal.read_only:
        assert principal.run_id is not None
        ids = [principal.run_id]
    else:
        raw = await state.pool.zrevrange(f"inc:runs:{principal.name}", 0, 99)
        ids = [r.decode() if isinstance(r, bytes) else str(r) for r in raw]
    fields = ("state", "created_at", "model", "paused")
    async with state.pool.pipeline(transaction=False) as pipe:
        for run_id in ids:  # only the small fields: a run's config can be megabytes
            pipe.hmget(state.services.store.run_key(run_id), list(fields))
        replies = await pipe.execute()
    runs = []
    for run_id, values in zip(ids, replies, strict=True):
        run = dict(zip(fields, (v.decode() if isinstance(v, bytes) else v for v in values), strict=True))
        if run["state"] is None:  # expired
            if not principal.read_only:
                await state.pool.zrem(f"inc:runs:{principal.name}", run_id)
            continue
        runs.append(
            {
                "id": run_id,
                "state": run["state"],
                "created_at": float(run["created_at"] or 0) or None,
                "model": run["model"],
                "paused": run["paused"] == "1",
            }
        )
    return JSONResponse({"runs": runs})


async def get_run(request: Request) -> Response:
    state = _state(request)
    run = await _run_for(request)
    view = await build_view(state.log, request.path_params["run_id"])
    data = view.to_dict()
    data["state"] = run.state or data["state"]  # the store is the authority on the run's state
    data["reason"] = run.get("reason") or data["reason"]
    data["paused"] = run.get("paused") == "1"
    return JSONResponse(data)


async def run_events(request: Request) -> Response:
    state = _state(request)
    await _run_for(request)
    after = request.headers.get("last-event-id") or request.query_params.get("after")
    if after is not None:
        try:
            ms, seq = parse_id(after)
        except ValueError as exc:
            raise ApiError(400, f"bad Last-Event-ID: {exc}") from None
        if ms >= 2**64 or seq >= 2**64:
            raise ApiError(400, f"bad Last-Event-ID: {after!r} is out of range")
        after = f"{ms}-{seq}"
    redact = request.state.principal.read_only  # a watch token: a browser's
    return event_stream(state, request.path_params["run_id"], after, redact=redact)


_CALL_TEXT_MAX = 200_000


async def run_calls(request: Request) -> Response:
    """Each tool call's whole input (from the stored conversation: there from its turn's message_stop)
    and its whole result (once recorded); the event log carries only previews of both."""
    state = _state(request)
    run = await _run_for(request)
    run_id = request.path_params["run_id"]
    store = state.services.store
    calls: dict[str, dict[str, Any]] = {}
    for message in await store.messages(run_id):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_use" and "id" in block:
                calls[str(block["id"])] = {"name": block.get("name"), "input": block.get("input")}
    async with state.pool.pipeline(transaction=False) as pipe:
        for turn in range(run.turn + 1):
            pipe.hgetall(store.results_key(run_id, turn))
        replies = await pipe.execute()
    for raw in replies:
        for value in raw.values():
            result = ToolResult.from_json(value)
            call = calls.setdefault(result.tool_use_id, {"name": result.name, "input": None})
            call.update(
                status=result.status,
                is_error=result.is_error,
                result=result.content[:_CALL_TEXT_MAX],
                result_cut=len(result.content) > _CALL_TEXT_MAX,
            )
    return JSONResponse({"calls": calls})


# ------------------------------------------------------------------------------------------- control


async def cancel(request: Request) -> Response:
    state = _state(request)
    run = await _run_for(request, write=True)
    body = await _json_body(request, 64 * 1024)
    if not isinstance(body, dict) or set(body) - {"tool_use_id", "reason"}:
        raise ApiError(400, 'expected {} or {"tool_use_id": "..."} (and optionally "reason")')
    run_id = request.path_params["run_id"]
    reason = str(body.get("reason") or "cancelled by request")
    tool_use_id = body.get("tool_use_id")
    if tool_use_id is None:
        if not await cancel_run(state.services, run_id, reason):
            raise ApiError(409, f"run {run_id!r} is already {run.state}")
        return JSONResponse({"run_id": run_id, "target": "run", "outcome": "cancelled"}, status_code=202)
    if not isinstance(tool_use_id, str):
        raise ApiError(400, "tool_use_id must be a string")
    outcome = await cancel_tool(state.services, run_id, tool_use_id, reason)
    if outcome == "unknown":
        raise ApiError(404, f"run {run_id!r} has no tool call {tool_use_id!r}")
    if outcome == "finished":
        raise ApiError(409, f"tool call {tool_use_id!r} already has its result")
    return JSONResponse({"run_id": run_id, "target": "tool", "outcome": outcome}, status_code=202)


async def pause(request: Request) -> Response:
    return await _pause_or_resume(request, pause=True)


async def resume(request: Request) -> Response:
    return await _pause_or_resume(request, pause=False)


async def _pause_or_resume(request: Request, *, pause: bool) -> Response:
    state = _state(request)
    run = await _run_for(request, write=True)
    run_id = request.path_params["run_id"]
    done = await (pause_run if pause else resume_run)(state.services, run_id)
    if not done:
        now = "paused" if run.get("paused") == "1" else run.state
        raise ApiError(409, f"cannot {'pause' if pause else 'resume'} run {run_id!r}: it is {now}")
    return JSONResponse({"run_id": run_id, "paused": pause}, status_code=202)


# ------------------------------------------------------------------------------------------- metrics & page


async def stats(request: Request) -> Response:
    state = _state(request)
    principal, _ = await _caller(request)
    snapshot = await state.metrics_store.read()
    data = state.metrics.stats(snapshot)
    data["yours"] = await _saved_over_runs(state, principal)
    return JSONResponse(data)


_SAVED_CACHE_MAX = 10_000


async def _saved_over_runs(state: _State, principal: Principal) -> dict[str, Any]:
    """Seconds the caller's last 100 runs saved against running their tools one by one after each
    stream, and in parallel after it (from each turn's turn_completed; ended runs are read once)."""
    if principal.read_only:
        assert principal.run_id is not None
        ids = [principal.run_id]
    else:
        raw = await state.pool.zrevrange(f"inc:runs:{principal.name}", 0, 99)
        ids = [r.decode() if isinstance(r, bytes) else str(r) for r in raw]
    sequential = parallel = 0.0
    runs = 0
    for run_id in ids:
        saved = state.saved_by_run.get(run_id)
        if saved is None:
            seq = par = 0.0
            ended = False
            milestones = await state.log.milestones(run_id)
            if not milestones:
                continue
            for _, event in milestones:
                kind = event.get("kind")
                if kind == "turn_completed":
                    par += float(event.get("saved_s") or 0.0)
                    seq += float(event.get("sealed_at") or 0.0) + float(event.get("tool_time_s") or 0.0)
                    seq -= float(event.get("last_result_at") or 0.0)
                ended = ended or kind in RUN_FINAL_KINDS
            saved = (seq, par)
            if ended:
                if len(state.saved_by_run) >= _SAVED_CACHE_MAX:
                    state.saved_by_run.clear()
                state.saved_by_run[run_id] = saved
        runs += 1
        sequential += saved[0]
        parallel += saved[1]
    return {"runs": runs, "saved_sequential_s": round(sequential, 3), "saved_s": round(parallel, 3)}


async def prometheus(request: Request) -> Response:
    state = _state(request)
    snapshot = await state.metrics_store.read()
    body, content_type = state.metrics.exposition(snapshot, state.fanout)
    return Response(body, media_type=content_type)


async def demo(request: Request) -> Response:
    state = _state(request)
    await _caller(request)
    if state.config.demo_request is None:
        raise ApiError(404, "this service was not started with --demo")
    return JSONResponse(state.config.demo_request)


async def event_schema(request: Request) -> Response:
    from ..events import event_json_schema

    return JSONResponse(event_json_schema())


async def index(request: Request) -> Response:
    return FileResponse(str(_STATIC / "index.html"), headers={"Cache-Control": "no-cache"})


async def healthz(request: Request) -> Response:
    await _state(request).pool.ping()
    return JSONResponse({"ok": True})


def create_app(config: ServiceConfig) -> Starlette:
    state = _State(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/metrics", prometheus),
        Route("/v1/runs", create_run, methods=["POST"]),
        Route("/v1/runs", list_runs, methods=["GET"]),
        Route("/v1/runs/{run_id}", get_run),
        Route("/v1/runs/{run_id}/events", run_events),
        Route("/v1/runs/{run_id}/calls", run_calls),
        Route("/v1/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/v1/runs/{run_id}/pause", pause, methods=["POST"]),
        Route("/v1/runs/{run_id}/resume", resume, methods=["POST"]),
        Route("/v1/stats", stats),
        Route("/v1/demo", demo),
        Route("/v1/schema/events", event_schema),
        Mount("/static", StaticFiles(directory=str(_STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=exception_handlers, lifespan=lifespan)
    app.state.inc = state
    return app
