"""`python -m bench.latency [--rate 10] [--seconds 60] [--relay-every 5] [--fifo]`: delivery latency of the
local stack (issue #14).

It starts `outbox serve` in a subprocess, POSTs messages at a steady open-loop rate, then reads each one back
with `GET /messages/{id}` and reports `queued_at - created_at`: the time from the ingest handler's write to
the relay's QUEUED mark, both stamped by the server's own clock (millisecond resolution), so the client's
polling cadence does not enter the figure. The client-side POST round trip is reported beside it.

What the figures mean: with the relay on a timer, delivery latency is about the timer's phase (uniform in
0..period) plus one relay run; with a wake-up on write it is the wake-up delay plus one run. Either way the
run itself is timed on moto, which serves every AWS call in Python behind one lock shared by the ingest
handler, the relay and these GETs (ADR 0004): its costs are not AWS's, and at higher rates the figure
measures moto's contention. The goal of issue #14 is printed beside the measurement and never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final

RESULTS: Final = Path(__file__).resolve().parent / "results"
GOAL: Final = "goal (issue #14): p50 ≤ 1 s, p99 ≤ 2.5 s"
CAVEAT: Final = (
    "moto is not a performance model: every AWS call is served in Python behind one lock shared by ingest, "
    "relay and the status reads, so these figures measure the local stack, not AWS."
)
READY_SECONDS: Final = 120.0
STOP_SECONDS: Final = 30.0
FIFO_GROUPS: Final = 10
SENDERS: Final = 8
"""POST threads: enough that a slow response does not hold up the schedule at the rates this is run at
(the largest lag behind the schedule is reported, so a client that could not keep up shows)."""


class BenchError(Exception):
    """The run could not be made (serve did not start, say); the message is one line for the user."""


def nearest_rank(values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile: the smallest observed value with at least `percent`% of the values at
    or below it. Always a measured value, never an interpolation, and for few samples the high percentiles
    are the maximum: the pessimistic reading, which is the one wanted when comparing with a goal."""
    if not values:
        raise ValueError("no values")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], not {percent}")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, None, None, None, None)
        return cls(
            len(values),
            p50=nearest_rank(values, 50),
            p90=nearest_rank(values, 90),
            p99=nearest_rank(values, 99),
            max=max(values),
        )


@dataclass
class Sent:
    index: int
    started: float
    round_trip: float
    message_id: str | None
    error: str | None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read().decode("utf-8", "replace")[:200]}


class Serve:
    """`outbox serve` as a subprocess. Its stdout and stderr are read by threads, so that a full pipe never
    stalls the stack; the "relay:" lines are counted by trigger, to show which wake-up delivered."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.api_url: str | None = None
        self.triggers: Counter[str] = Counter()
        self._ready = threading.Event()
        self._stderr: deque[str] = deque(maxlen=20)
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
            )
        except OSError as exc:
            raise BenchError(f"cannot start outbox serve: {exc}") from None
        self._readers = [
            threading.Thread(target=target, daemon=True) for target in (self._read_stdout, self._read_stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self._process.stdout is not None  # noqa: S101 - Popen with PIPE
        for line in self._process.stdout:
            if line.startswith("API "):
                self.api_url = line.split()[1]
            elif line.startswith("ready"):
                self._ready.set()
            elif line.startswith("relay: "):
                try:
                    self.triggers[str(json.loads(line.removeprefix("relay: ")).get("trigger", "timer"))] += 1
                except (ValueError, AttributeError):
                    self.triggers["?"] += 1
        self._ready.set()  # end of output: wake the waiter, which then sees the exit

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None  # noqa: S101 - Popen with PIPE
        for line in self._process.stderr:
            if line.strip():
                self._stderr.append(line.strip())

    def wait_ready(self, timeout: float) -> str:
        if not self._ready.wait(timeout):
            raise BenchError(f"outbox serve was not ready within {timeout:g} s")
        if self._process.poll() is not None or self.api_url is None:
            try:  # the output ended (or had no API line): the process is exiting, or is not the one expected
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                raise BenchError("outbox serve printed no 'API  http://...' line") from None
            self._readers[1].join(timeout=5)  # its last line is the reason
            last = self._stderr[-1] if self._stderr else "no message"
            raise BenchError(f"outbox serve exited with code {self._process.returncode}: {last}")
        return self.api_url.replace("//localhost:", "//127.0.0.1:")  # it listens on IPv4 loopback only

    def stop(self) -> int:
        """SIGINT (serve's Ctrl-C, exit 0), then a kill if it has not stopped within STOP_SECONDS; then
        the readers end at the pipes' end and the pipes are closed."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            code = self._process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        for reader, pipe in zip(self._readers, (self._process.stdout, self._process.stderr), strict=True):
            reader.join(timeout=5)
            if pipe is not None:
                pipe.close()
        return code


def _post(api: str, index: int, groups: int) -> Sent:
    """One POST; on a FIFO queue the messages go round `groups` message groups (one would serialize them)."""
    message: dict[str, Any] = {"payload": {"bench": "latency", "i": index}}
    if groups:
        message["group_id"] = f"bench-{index % groups}"
    started = time.perf_counter()
    try:
        status, body = _request("POST", f"{api}/messages", message)
    except (OSError, ValueError) as exc:  # no connection, a timeout, a body that is not JSON
        return Sent(index, started, time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}")
    round_trip = time.perf_counter() - started
    if status == 202 and isinstance(body.get("message_id"), str):
        return Sent(index, started, round_trip, body["message_id"], None)
    return Sent(index, started, round_trip, None, f"HTTP {status}: {body.get('error')}")


def send(api: str, *, rate: float, total: int, groups: int = 0) -> tuple[list[Sent], float]:
    """Message i goes at start + i/rate whatever earlier responses do (an open loop: a closed loop would
    slow down exactly when the stack does, and hide it). Returns the sends and the largest lag behind the
    schedule."""
    futures: list[Future[Sent]] = []
    with ThreadPoolExecutor(SENDERS, thread_name_prefix="post") as pool:
        start = time.perf_counter()
        last_note = start
        for index in range(total):
            due = start + index / rate
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            futures.append(pool.submit(_post, api, index, groups))
            if time.perf_counter() - last_note >= 5:
                last_note = time.perf_counter()
                accepted = sum(1 for f in futures if f.done() and f.result().message_id)
                _progress(f"sent {index + 1}/{total}, accepted {accepted}")
        sent = [future.result() for future in futures]
    lag = max((s.started - (start + s.index / rate) for s in sent), default=0.0)
    return sent, lag


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def collect(api: str, ids: Sequence[str], *, timeout: float) -> tuple[dict[str, float], dict[str, str]]:
    """Reads each message until it has a `queued_at` (QUEUED or a later state), is FAILED (final), or the
    timeout passes. Returns the delivery seconds by id, and the last status seen of every one not queued:
    a message that never got there is reported, not dropped."""
    delivered: dict[str, float] = {}
    waiting: dict[str, str] = dict.fromkeys(ids, "unread")
    failed: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    last_note = time.monotonic()
    while waiting and time.monotonic() < deadline:
        for message_id in list(waiting):
            try:
                status, record = _request("GET", f"{api}/messages/{message_id}")
            except OSError as exc:
                waiting[message_id] = f"{type(exc).__name__}: {exc}"
                continue
            if status == 200 and record.get("queued_at"):
                delivered[message_id] = _seconds_between(record["created_at"], record["queued_at"])
                del waiting[message_id]
            elif record.get("status") == "FAILED":
                failed[message_id] = "FAILED"
                del waiting[message_id]
            else:
                waiting[message_id] = str(record.get("status") or f"HTTP {status}")
        if time.monotonic() - last_note >= 5:
            last_note = time.monotonic()
            _progress(f"queued {len(delivered)}/{len(ids)}")
        if waiting:
            time.sleep(0.25)
    return delivered, {**failed, **waiting}


def _progress(line: str) -> None:
    print(f"bench.latency: {line}", file=sys.stderr, flush=True)


def _fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "—" if value is None else f"{value * scale:,.{digits}f}"


def markdown(data: dict[str, Any]) -> str:
    counts, delivery, post = data["counts"], data["delivery_seconds"], data["post_round_trip_seconds"]
    options = data["options"]

    def row(name: str, summary: dict[str, Any], scale: float, digits: int) -> str:
        cells = [_fmt(summary[key], scale, digits) for key in ("p50", "p90", "p99", "max")]
        return "| " + " | ".join([name, *cells, str(summary["n"])]) + " |"

    triggers = ", ".join(f"{k} {v}" for k, v in sorted(data["relay_runs_by_trigger"].items())) or "none"
    lines = [
        "# Delivery latency (local stack)",
        "",
        f"Command: `{data['command']}` — serve: `{' '.join(data['serve_options'])}` "
        f"({'FIFO' if options['fifo'] else 'standard'} queue).",
        f"Sent {counts['sent']:,} at {data['achieved_rate']:.2f} msgs/s (asked {options['rate']:g}; "
        f"largest lag behind the schedule {data['max_schedule_lag_seconds'] * 1000:.0f} ms); "
        f"relay runs that moved messages, by trigger: {triggers}; serve exit code {data['serve_exit_code']}.",
        "",
        "| figure | p50 | p90 | p99 | max | n |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        row("queued_at - created_at (s)", delivery, 1.0, 3),
        row("POST round trip (ms)", post, 1000.0, 1),
        "",
        "| sent | accepted | refused | queued | not queued |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {counts['sent']:,} | {counts['accepted']:,} | {counts['refused']:,} | {counts['queued']:,} "
        f"| {counts['not_queued']:,} |",
        "",
        *([f"First refusal: {data['refused'][0]['error']}", ""] if data["refused"] else []),
        *(
            [f"Not queued, by last status: {dict(Counter(data['not_queued'].values()))}", ""]
            if data["not_queued"]
            else []
        ),
        f"Measured p50 {_fmt(delivery['p50'])} s, p99 {_fmt(delivery['p99'])} s; {data['goal']} "
        "(reported, not asserted). Percentiles: nearest rank.",
        f"Caveat: {data['caveat']}",
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Starts serve, sends, collects, stops serve (always, also on an error or Ctrl-C); the JSON document."""
    serve_options = ["outbox", "serve", "--port", str(_free_port()), "--aws-port", "0"]
    serve_options += ["--relay-every", f"{args.relay_every:g}", *(["--fifo"] if args.fifo else [])]
    serve_options += ["--no-consumer"]  # the relay's latency alone: the example consumer would share moto
    serve = Serve([sys.executable, "-m", "outbox.cli", *serve_options[1:]])
    try:
        api = serve.wait_ready(READY_SECONDS)
        total = max(1, round(args.rate * args.seconds))
        _progress(f"serve ready at {api}; sending {total} messages at {args.rate:g}/s")
        sent, lag = send(api, rate=args.rate, total=total, groups=FIFO_GROUPS if args.fifo else 0)
        ids = [s.message_id for s in sent if s.message_id]
        _progress(f"sent {len(sent)}, accepted {len(ids)}; reading them back")
        delivered, not_queued = collect(api, ids, timeout=args.timeout)
    finally:
        serve_exit = serve.stop()
    span = max(s.started for s in sent) - min(s.started for s in sent)
    refused = [{"index": s.index, "error": s.error} for s in sent if s.message_id is None]
    return {
        "command": command,
        "serve_options": serve_options,
        "options": {k: vars(args)[k] for k in ("rate", "seconds", "relay_every", "fifo", "timeout")},
        "counts": {
            "sent": len(sent),
            "accepted": len(ids),
            "refused": len(refused),
            "queued": len(delivered),
            "not_queued": len(not_queued),
        },
        "achieved_rate": (len(sent) - 1) / span if span > 0 else 0.0,
        "max_schedule_lag_seconds": lag,
        "delivery_seconds": asdict(Summary.of(list(delivered.values()))),
        "post_round_trip_seconds": asdict(Summary.of([s.round_trip for s in sent])),
        "relay_runs_by_trigger": dict(serve.triggers),
        "serve_exit_code": serve_exit,  # 0: it stopped on SIGINT as it should
        "not_queued": not_queued,
        "refused": refused,
        "goal": GOAL,
        "caveat": CAVEAT,
    }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second (default 10)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send (default 60)")
    parser.add_argument("--relay-every", type=float, default=5.0, help="serve's relay period (default 5)")
    parser.add_argument("--fifo", action="store_true", help="serve with a FIFO queue")
    parser.add_argument("--timeout", type=float, default=60.0, help="wait after the last send (default 60)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for latency.md and .json")
    args = parser.parse_args(argv)
    if not (args.rate > 0 and args.seconds > 0 and args.timeout >= 0 and args.relay_every > 0):
        parser.error("--rate, --seconds and --relay-every must be positive, --timeout not negative")
    command = " ".join(["python -m bench.latency", *(argv if argv is not None else sys.argv[1:])])
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM also stops serve, as Ctrl-C does
    try:
        data = run(args, command)
    except BenchError as exc:
        print(f"bench.latency: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.latency: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    table = markdown(data)
    print(table)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "latency.md").write_text(table, encoding="utf-8")
        (args.output / "latency.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"bench.latency: cannot write to {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    counts = data["counts"]
    return 0 if counts["accepted"] and counts["queued"] == counts["accepted"] else 1


if __name__ == "__main__":
    sys.exit(main())
