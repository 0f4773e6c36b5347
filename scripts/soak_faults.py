"""Soak: runs under worker kills, SIGTERM deploys and Redis outages; counts duplicates and stuck runs.

    .venv/bin/python scripts/soak_faults.py                       # the defaults: about two minutes
    .venv/bin/python scripts/soak_faults.py --runs 60 --kills 40 --deploys 40 --outages 10

Everything is on loopback and private: a redis-server with an append-only file (fsync'd at every
write) in a temporary directory, the fake Messages API, and ``incremental worker`` processes of
``tests/_user_worker.py``. Stream workers serve the default queue; tool workers serve a queue of their
own (the ``mark`` tool's), so a kill lands either mid-tool or mid-stream, and the two are counted apart.

Each run is one turn of four ``mark`` calls (each appends ``run tool`` to a file after a second of work,
the last one after five, while the model still streams), then a final turn. Faults are spread over the
runs, one every ``--every`` seconds:

    kill-tool     SIGKILL a tool worker (one that is running a call, when there is one), start another
    kill-stream   SIGKILL a stream worker (one with a stream open, when there is one), start another
    deploy        SIGTERM a worker of either kind (it drains) and start its replacement
    outage        SIGTERM or SIGKILL the redis-server, 0.5 to 3 s without it, start it again

What is counted, per run: its end (completed, failed and why, or stuck: no final event within
``--run-timeout``), and duplicates: a tool_use id with more than one result event or a
tool_duplicate_result, a turn continued more than once, a ``mark`` line written twice, a request the
fake API rejected. Runs keep coming, ``--concurrency`` at a time, until at least ``--runs`` were started
and every planned fault was applied; it stops by itself once they have all ended (a run not ended after
``--run-timeout`` counts as stuck), and after ``--max-seconds`` at most. Exit status 1 when any run is
stuck, anything was duplicated or a request was rejected. Also counted: tools run again after a kill,
streams asked again (killed before their first dispatch), turns salvaged (killed after it), and jobs
handed over by deploys.

For the stream kills alone, more of them than the defaults::

    .venv/bin/python scripts/soak_faults.py --runs 30 --kills 4 --stream-kills 12 \\
        --deploys 4 --outages 2 --seed 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._streams import (  # noqa: E402
    MESSAGE_STOP,
    frame,
    json_delta,
    message_delta,
    message_start,
    stop,
    text_delta,
    text_start,
    tool_start,
)
from tests._toolsets import SOAK_QUEUE  # noqa: E402

from incremental import Runner  # noqa: E402
from incremental.adapters._redis_server import RedisServer  # noqa: E402
from incremental.events import RUN_FINAL_KINDS  # noqa: E402
from incremental.fake_api import FakeMessagesAPI  # noqa: E402

GO = [{"role": "user", "content": "go"}]


def turns(marks: Path, calls: int) -> list[bytes]:
    """Turn 0: a tool_use block every 0.8 s, message_stop 0.8 s after the last; turn 1: text. The last
    call takes 5 s (longer than the workers' 3 s shutdown grace: a deploy hands it over), the others 1 s."""
    out = [frame(o) for o in (message_start(), text_start(0), text_delta(0, "On it."), stop(0))]
    for i in range(1, calls + 1):
        value = json.dumps({"path": str(marks), "delay": 5.0 if i == calls else 1.0})
        out += [frame(tool_start(i, f"toolu_soak{i}", "mark"), t=0.8 * i), frame(json_delta(i, value))]
        out.append(frame(stop(i)))
    out += [frame(message_delta("tool_use"), t=0.8 * (calls + 1)), frame(MESSAGE_STOP)]
    final = [message_start("msg_final"), text_start(0), text_delta(0, "Done."), stop(0)]
    return [b"".join(out), b"".join(frame(o) for o in [*final, message_delta("end_turn"), MESSAGE_STOP])]


@dataclass
class Worker:
    kind: str  # "tool" or "stream"
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Soak:
    args: argparse.Namespace
    redis: RedisServer
    api_url: str
    workdir: Path
    workers: list[Worker] = field(default_factory=list)
    retired: list[Worker] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    busy: dict[str, float] = field(default_factory=dict)  # worker pid -> when it was last seen working
    outage_s: float = 0.0
    timeline: list[str] = field(default_factory=list)

    def start_worker(self, kind: str) -> Worker:
        env = {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "ANTHROPIC_BASE_URL": self.api_url,
            "ANTHROPIC_API_KEY": "sk-soak",
            "INCREMENTAL_JOB_LEASE": "3",
            "INCREMENTAL_SHUTDOWN_GRACE": "3",
            "INCREMENTAL_STREAM_IDLE_TIMEOUT": "20",
        }
        env.pop("INCREMENTAL_TOOLSETS", None)
        if kind == "tool":
            env["INCREMENTAL_QUEUE"] = SOAK_QUEUE
        else:
            env.pop("INCREMENTAL_QUEUE", None)
        log = self.workdir / f"worker-{kind}-{len(self.workers) + len(self.retired)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "incremental", "worker", "tests._user_worker.WorkerSettings"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        worker = Worker(kind, proc, log)
        self.note(f"started {kind} worker {proc.pid}")
        self.workers.append(worker)
        return worker

    def pick(self, kind: str | None) -> Worker:
        """A worker of ``kind`` (any kind: None), preferring one seen working in the last two seconds."""
        pool = [w for w in self.workers if kind is None or w.kind == kind]
        now = time.monotonic()
        working = [w for w in pool if now - self.busy.get(str(w.proc.pid), -10.0) < 2.0]
        return random.choice(working or pool)

    def note(self, text: str) -> None:
        self.timeline.append(f"{time.time():.3f} {text}")

    async def fault(self, what: str) -> None:
        self.faults[what] += 1
        if what in ("kill-tool", "kill-stream"):
            victim = self.pick(what.removeprefix("kill-"))
            self.note(f"{what} {victim.proc.pid}")
            victim.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.proc.wait)
            self.workers.remove(victim)
            self.retired.append(victim)
            self.start_worker(victim.kind)
        elif what == "deploy":
            victim = self.pick(None)
            self.note(f"deploy: SIGTERM {victim.kind} worker {victim.proc.pid}")
            victim.proc.send_signal(signal.SIGTERM)
            self.workers.remove(victim)
            self.retired.append(victim)
            self.start_worker(victim.kind)  # a rolling deploy: the new one starts while the old drains
        elif what == "outage":
            kill = random.random() < 0.5
            self.faults["outage-sigkill" if kill else "outage-sigterm"] += 1
            began = time.monotonic()
            self.note(f"outage ({'SIGKILL' if kill else 'SIGTERM'})")
            await asyncio.to_thread(self.redis.down, kill=kill)
            await asyncio.sleep(random.uniform(0.5, 3.0))
            await asyncio.to_thread(self.redis.up)
            self.note("redis back")
            self.outage_s += time.monotonic() - began


def _stop(proc: subprocess.Popen[bytes]) -> int | str:
    """SIGTERM (a worker that got one already is draining: left to it), then 60 s, then SIGKILL."""
    if proc.poll() is None and proc.returncode is None:
        proc.terminate()
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "killed after 60 s"


async def follow(runner: Runner, soak: Soak, timeout: float) -> dict[str, Any]:
    """Start one run and follow its log to its end; what happened to it."""
    run = await runner.start(GO, model="claude-sonnet-4-5", max_tokens=1024, toolset="test", max_turns=2)
    events: list[dict[str, Any]] = []
    state = "stuck"
    try:
        async with asyncio.timeout(timeout):
            async for event in run.events():
                data = event.model_dump()
                events.append(data)
                worker = data.get("worker")
                if isinstance(worker, str):
                    soak.busy[worker.rpartition(":")[2]] = time.monotonic()
                if data["kind"] in RUN_FINAL_KINDS:
                    state = data.get("state") or data["kind"]
        if state == "stuck":
            state = "no final event"
    except TimeoutError:
        pass
    except Exception as exc:  # a run whose record vanished, say: counted, not fatal to the soak
        state = f"error: {type(exc).__name__}"
    results = Counter(e["tool_use_id"] for e in events if e["kind"] in ("tool_completed", "tool_failed"))
    final = next((e for e in events if e["kind"] in RUN_FINAL_KINDS), {})
    return {
        "run_id": run.id,
        "state": state,
        "error_type": final.get("error_type"),
        "reason": final.get("reason"),
        "duplicate_results": sum(n - 1 for n in results.values() if n > 1)
        + sum(1 for e in events if e["kind"] == "tool_duplicate_result"),
        "duplicate_continuations": sum(
            n - 1 for n in Counter(e["turn"] for e in events if e["kind"] == "continued").values() if n > 1
        ),
        "executions": sum(e.get("attempt", 1) > 1 for e in events if e["kind"] == "tool_started"),
        "retried_streams": sum(1 for e in events if e["kind"] == "stream_retry"),
        "salvaged_turns": sum(1 for e in events if e["kind"] == "turn_salvaged"),
        "handed_over": sum(1 for e in events if e["kind"] == "job_handed_over"),
        "events": events,
    }


async def soak(args: argparse.Namespace) -> int:
    random.seed(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="incremental-soak-"))
    marks = workdir / "marks.txt"
    began = time.monotonic()
    with RedisServer(appendonly=True) as redis:
        async with FakeMessagesAPI(turns(marks, args.calls), speed=1.0) as api:
            state = Soak(args, redis, api.url, workdir)
            for _ in range(args.stream_workers):
                state.start_worker("stream")
            for _ in range(args.tool_workers):
                state.start_worker("tool")
            plan = ["kill-tool"] * args.kills + ["kill-stream"] * args.stream_kills
            plan += ["deploy"] * args.deploys + ["outage"] * args.outages
            random.shuffle(plan)
            async with Runner(redis_url=redis.url) as runner:
                await asyncio.sleep(2.0)  # the workers' start-up (imports), before the first run
                deadline = began + args.max_seconds
                tasks: list[asyncio.Task[dict[str, Any]]] = []

                async def one() -> dict[str, Any]:
                    left = max(1.0, deadline - time.monotonic())
                    return await follow(runner, state, min(args.run_timeout, left))

                async def keep_running() -> None:
                    # Runs keep coming (``--concurrency`` at a time) until there were ``--runs`` of them
                    # and every fault of the plan has been applied.
                    while (len(tasks) < args.runs or plan) and time.monotonic() < deadline:
                        if sum(not t.done() for t in tasks) < args.concurrency:
                            tasks.append(asyncio.create_task(one()))
                        await asyncio.sleep(0.2)

                producer = asyncio.create_task(keep_running())
                while plan and time.monotonic() < deadline:
                    await asyncio.sleep(args.every * random.uniform(0.5, 1.5))
                    await state.fault(plan.pop())
                await producer
                outcomes = await asyncio.gather(*tasks)
                requests, rejections = len(api.requests), list(api.rejections)
            exits = [await asyncio.to_thread(_stop, w.proc) for w in state.workers + state.retired]
    lines = Counter(marks.read_text().splitlines()) if marks.exists() else Counter()
    report = {
        "runs": len(outcomes),
        "states": Counter(o["state"] for o in outcomes),
        "failed_by": Counter(o["error_type"] for o in outcomes if o["state"] == "failed"),
        "stuck": sum(o["state"] in ("stuck", "no final event") for o in outcomes),
        "duplicate_results": sum(o["duplicate_results"] for o in outcomes),
        "duplicate_continuations": sum(o["duplicate_continuations"] for o in outcomes),
        "duplicate_side_effects": sum(n - 1 for n in lines.values() if n > 1),
        "rejected_requests": len(rejections),
        "requests": requests,
        "faults": dict(state.faults),
        "redis_outage_seconds": round(state.outage_s, 1),
        "tool_reruns": sum(o["executions"] for o in outcomes),
        "streams_asked_again": sum(o["retried_streams"] for o in outcomes),
        "turns_salvaged": sum(o["salvaged_turns"] for o in outcomes),
        "jobs_handed_over": sum(o["handed_over"] for o in outcomes),
        "worker_exit_codes": Counter(exits),
        "seconds": round(time.monotonic() - began, 1),
        "logs": str(workdir),
    }
    print(json.dumps(report, indent=2, default=str))
    if args.verbose:
        print("\n".join(state.timeline))
    twice = {line for line, n in lines.items() if n > 1}
    for o in outcomes:
        doubled = sorted(line.split()[1] for line in twice if line.startswith(o["run_id"] + " "))
        if o["state"] != "completed" or doubled:
            print(f"  {o['run_id']}: {o['state']} {o['error_type'] or ''} {o['reason'] or ''}")
        if o["state"] != "completed" and args.verbose:
            print("    " + " ".join(e["kind"] for e in o["events"]))
        for tool_id in doubled:
            print(f"    {tool_id} marked twice:")
            for e in o["events"]:
                if e.get("tool_use_id") == tool_id and e["kind"] not in (
                    "tool_field_completed",
                    "tool_progress",
                ):
                    print(f"      {e['ts']:.3f} {e['kind']} {e.get('worker') or ''} {e.get('attempt') or ''}")
    duplicates = (
        report["duplicate_results"] + report["duplicate_continuations"] + report["duplicate_side_effects"]
    )
    return 1 if report["stuck"] or duplicates or rejections else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=5, help="runs in flight at once")
    parser.add_argument("--calls", type=int, default=4, help="mark calls in each run's first turn")
    parser.add_argument("--stream-workers", type=int, default=2)
    parser.add_argument("--tool-workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs of tool workers")
    parser.add_argument("--stream-kills", type=int, default=4, help="SIGKILLs of stream workers")
    parser.add_argument("--deploys", type=int, default=12, help="SIGTERMs (each with a replacement)")
    parser.add_argument("--outages", type=int, default=6, help="redis-server stops and restarts")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between faults (on average)")
    parser.add_argument("--run-timeout", type=float, default=180.0, help="a run not ended by then is stuck")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="the whole soak, at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="the events of each run that did not complete")
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
