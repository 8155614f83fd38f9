"""Load on loopback, bounded in count and time: N concurrent clients x M requests on the real daemon (tiny
model, 2 denoising steps). A quarter of the clients cancel every third request a moment after sending it, a
quarter drop their connection (no close frame) halfway with a request in flight. Every request must end as a
result or a `cancelled` error (the dropped ones: the daemon cancels them); nothing is overloaded, failed or
left queued. The daemon's resident memory (VmRSS) after the load may exceed its level after a warm-up by at
most RSS_GROWTH_BOUND_MIB; concurrent requests must share batches (mean batch size > 1).

Clients: $INFILL_RELIABILITY_CLIENTS (default 16), 10 requests each per round; rounds: $INFILL_RELIABILITY_SCALE
(default 1), the RSS taken after each, so that a benchmark run shows whether memory levels off.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field

from server.protocol import ErrorCode, FillError, InfillMessage, Unavailable

from .conftest import budget

CLIENTS = int(os.environ.get("INFILL_RELIABILITY_CLIENTS", "16"))
REQUESTS = 10  # per client and round
ROUNDS = budget(1)
WARMUP_REQUESTS = 3  # per client, before the RSS baseline
RSS_GROWTH_BOUND_MIB = 64  # after the load vs after the warm-up
ROLES = ("steady", "canceller", "steady", "leaver")  # by client number, in turn


def document(client: int) -> tuple[str, int]:
    """A small file per client (different prompts, so the batch really holds different requests)."""
    text = (f"def handler_{client}(event, context):\n    total = 0\n    for item in event['items']:\n"
            f"        total += item * {client + 1}\n    return \n\n\nprint(handler_{client}({{'items': [1]}}, None))\n")
    return text, text.index("return ") + len("return ")


@dataclass
class Tally:
    answered: int = 0  # a result
    cancelled: int = 0  # a `cancelled` error after the client's cancel
    raced: int = 0  # the result arrived before the cancel did
    abandoned: int = 0  # in flight when the client dropped its connection
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    batch_sizes: list[int] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


async def run_client(daemon, n: int, requests: int, tally: Tally, start: asyncio.Barrier,
                     roles: tuple[str, ...] = ROLES) -> None:
    role = roles[n % len(roles)]
    text, cursor = document(n)
    client = daemon.client()
    await client.connect()
    await start.wait()  # every client connected: they all send their first request at once
    try:
        for k in range(requests):
            msg = InfillMessage(id=f"c{n}-{k}", text=text, cursor=cursor, max_steps=2, lengths=(8,), seed=k,
                                quality="fast", deadline_ms=120_000)
            started = time.perf_counter()
            tally.in_flight += 1
            tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
            task = asyncio.ensure_future(client.infill(msg))
            try:
                if role == "leaver" and k == requests // 2:
                    await asyncio.sleep(0.01 * (n % 5))
                    client._ws.transport.abort()  # gone without a close frame
                    try:
                        await asyncio.wait_for(task, 30)
                    except Unavailable:
                        tally.abandoned += 1
                        return
                    tally.answered += 1  # it was answered before the connection went
                    return
                if role == "canceller" and k % 3 == 1:
                    await asyncio.sleep(0.005 * (k % 4))
                    await client.cancel(msg.id)
                    try:
                        result = await asyncio.wait_for(task, 60)
                    except FillError as exc:
                        assert exc.code == ErrorCode.CANCELLED, exc
                        tally.cancelled += 1
                        continue
                    tally.raced += 1
                else:
                    result = await asyncio.wait_for(task, 120)
                tally.answered += 1
                tally.latencies.append(time.perf_counter() - started)
                tally.batch_sizes.append(result.batch_size)
            finally:
                tally.in_flight -= 1
    finally:
        await client.close()


async def load(daemon, clients: int, requests: int, roles: tuple[str, ...] = ROLES) -> Tally:
    tally, start = Tally(), asyncio.Barrier(clients)
    await asyncio.gather(*(run_client(daemon, n, requests, tally, start, roles) for n in range(clients)))
    return tally


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def batched(status) -> tuple[int, int]:
    """(batches, requests run in them) so far, from a status message."""
    batches = status.extra["batches"]
    return batches, round(status.extra["mean_batch_size"] * batches)


async def test_concurrent_clients_are_all_answered_in_bounded_memory(daemon_proc, figures):
    async with daemon_proc.client() as c:
        rss_start = daemon_proc.rss_kib()
        await load(daemon_proc, CLIENTS, WARMUP_REQUESTS, roles=("steady",))
        rss_warm = daemon_proc.rss_kib()
        before = await c.status()
        started = time.perf_counter()
        tally, rss_rounds = Tally(), []
        for _ in range(ROUNDS):
            round_tally = await load(daemon_proc, CLIENTS, REQUESTS)
            for name in ("answered", "cancelled", "raced", "abandoned", "latencies", "batch_sizes"):
                setattr(tally, name, getattr(tally, name) + getattr(round_tally, name))
            tally.max_in_flight = max(tally.max_in_flight, round_tally.max_in_flight)
            deadline = time.monotonic() + 30
            while (after := await c.status()).queue or after.running:  # the dropped clients' requests end
                assert time.monotonic() < deadline, after
                await asyncio.sleep(0.1)
            rss_rounds.append(daemon_proc.rss_kib())
        seconds = time.perf_counter() - started
    rss_end = rss_rounds[-1]
    leavers = sum(1 for n in range(CLIENTS) if ROLES[n % len(ROLES)] == "leaver")
    total = ROUNDS * (CLIENTS * REQUESTS - leavers * (REQUESTS - REQUESTS // 2 - 1))  # leavers stop at their drop
    assert tally.answered + tally.cancelled + tally.raced + tally.abandoned == total
    assert after.served - before.served == tally.answered + tally.raced
    assert after.failed == before.failed  # no overloaded, deadline or model errors
    cancelled = after.extra["cancelled"] - before.extra["cancelled"]
    assert cancelled == tally.cancelled + tally.abandoned
    assert tally.max_in_flight == CLIENTS
    (b0, r0), (b1, r1) = batched(before), batched(after)
    mean_batch = (r1 - r0) / (b1 - b0)
    assert mean_batch > 1, (b1 - b0, r1 - r0)
    growth_mib = (rss_end - rss_warm) / 1024
    assert growth_mib < RSS_GROWTH_BOUND_MIB, (rss_warm, rss_rounds)
    assert daemon_proc.alive()

    ms = [s * 1000 for s in tally.latencies]
    for key, value in {
        "clients": CLIENTS, "rounds": ROUNDS, "requests_per_client_and_round": REQUESTS, "requests": total,
        "answered": tally.answered, "cancelled": tally.cancelled, "answered_before_cancel_arrived": tally.raced,
        "abandoned_by_disconnect": tally.abandoned, "max_in_flight": tally.max_in_flight,
        "overloaded_or_failed": after.failed - before.failed, "seconds": round(seconds, 2),
        "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(percentile(ms, 0.95), 1),
        "max_ms": round(max(ms), 1), "batches": b1 - b0, "mean_batch_size": round(mean_batch, 2),
        "mean_batch_size_per_request": round(statistics.mean(tally.batch_sizes), 2),
        "rss_start_mib": round(rss_start / 1024, 1), "rss_after_warmup_mib": round(rss_warm / 1024, 1),
        "rss_after_load_mib": round(rss_end / 1024, 1), "rss_growth_mib": round(growth_mib, 1),
        "rss_growth_bound_mib": RSS_GROWTH_BOUND_MIB, "rss_after_each_round_mib": [round(r / 1024, 1)
                                                                                   for r in rss_rounds],
    }.items():
        figures.set("load", key, value)
