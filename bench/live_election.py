"""``ztream bench live-election``: a simulation of the live election rules, not a measurement.

Who takes a new live chunk from the server (``peer/live.py``, twin of
``client/live-edge.js``; docs/p2p.md, "Live: peers carry the edge") decides
how many HTTP fetches each chunk costs. This script plays those rules out
on a model of a station's swarm, chunk after chunk, for several swarm sizes,
and prints, for each rule in the same run:

- ``fetches``: HTTP fetches per chunk (server fetches of the chunk by any
  listener: at once, after the wait, or as a fallback);
- ``offload``: 1 - fetches / n, what the peers carried;
- ``worst p50`` / ``worst max``: per chunk, the latest moment (seconds after
  the chunk was cut) at which a listener had it: its median over the chunks,
  and its maximum;
- ``late``: the share of listener-chunks that arrived after the point where
  the browser's buffer falls under ``emergencyAhead`` (emergency mode: the
  server for everything near the playhead).

The model (every figure a parameter):

- the graph is the tracker's: listeners arrive one by one, and each dials up
  to ``--dial`` of the earlier ones at random, among those with fewer than
  ``--max-neighbours``; the links are both ways;
- each chunk is cut at t = 0; the listeners that fetch it at once ask for it
  before it exists (the edge request: the gateway answers it as it is cut)
  and have it after ``--edge-http``; the others learn of it from their next
  manifest poll (a phase drawn in ``[0, --poll)`` per listener and chunk) or
  from a neighbour's HAVE, whichever comes first;
- a listener that learns of a chunk a neighbour holds asks that neighbour
  (``--slots`` uploads at once per holder; a hop takes ``--hop-min`` to
  ``--hop-max`` seconds, HAVE and transfer), as long as it has
  ``minPeerWindow`` (0.3 s) before its emergency point; else, and once its
  wait (the rule's) is over with no neighbour holding it, it asks the server
  (``--http-min`` to ``--http-max`` seconds);
- each listener plays ``L`` seconds behind the chunk's cut, ``L`` drawn in
  ``[3, 4)`` (``start_behind_seconds`` 3 with the poll's saw-tooth; the live
  bench's p50 is 3.5 s), 1 s chunks: its emergency point (``emergencyAhead``
  1 s before the chunk's start) is ``L - 2`` s after the cut, and its wait
  is capped there (``liveFetchDelay``'s ``untilNeeded - httpSeconds``).

Rules: ``current`` is the rule before this change (a local minimum of the
election hash among a listener and its neighbours fetches at once, every
other listener waits ``peer_wait``); ``under-T`` is the first proposal
(only local minima whose hash is under ``T`` of the range fetch at once,
every other listener waits ``peer_wait``); ``tiered`` is ``peer/live.py``'s
``fetch_wait`` as shipped: the local minima under ``AT_ONCE_SHARE`` (5 %) or
with fewer than ``SMALL_NEIGHBOURHOOD`` (5) neighbours at once, the other
local minima ``SOON_FACTOR`` (0.4) x ``peer_wait`` after the chunk is due
(here: when the previous chunk was learnt of, plus a chunk; the edge request
then), everyone else ``peer_wait`` after learning of it.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from peer import live

__all__ = ["Model", "RULES", "graph", "main", "simulate"]

RANGE = 2**32
SERVER = -1

# rule(self id, neighbour ids, index, model) -> seconds to wait for a neighbour (0: at once)
Rule = Callable[[str, list[str], int, "Model"], float]

@dataclass(frozen=True, slots=True)
class Model:
    dial: int = 5
    max_neighbours: int = 16
    want_neighbours: int = 5
    peer_wait: float = 0.7
    poll: float = 1.0
    slots: int = 4
    hop_min: float = 0.08
    hop_max: float = 0.25
    http_min: float = 0.05
    http_max: float = 0.2
    edge_http: float = 0.03
    behind_min: float = 3.0
    behind_max: float = 4.0
    emergency_ahead: float = 1.0
    min_peer_window: float = 0.3
    chunk: float = 1.0


def rule_current(me: str, others: list[str], index: int, m: Model) -> float:
    return 0.0 if live.elected_fetcher(me, others, index) == me else m.peer_wait


def rule_under_t(me: str, others: list[str], index: int, m: Model) -> float:
    at_once = live.elected_fetcher(me, others, index) == me and live.election_hash(me, index) < 0.05 * RANGE
    return 0.0 if at_once else m.peer_wait


def rule_tiered(me: str, others: list[str], index: int, m: Model) -> float:
    return live.fetch_wait(me, others, index, m.peer_wait)


RULES: dict[str, Rule] = {"current": rule_current, "under-T": rule_under_t, "tiered": rule_tiered}


def graph(n: int, m: Model, rng: random.Random) -> list[list[int]]:
    """The neighbours of each of ``n`` listeners that arrived in order and dialled earlier ones."""
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for i in range(n):
        earlier = [j for j in range(i) if len(nbrs[j]) < m.max_neighbours]
        rng.shuffle(earlier)
        for j in earlier[: m.dial]:
            nbrs[i].add(j)
            nbrs[j].add(i)
    return [sorted(s) for s in nbrs]


@dataclass(slots=True)
class ChunkResult:
    fetches: int
    worst: float
    late: int


def simulate(nbrs: list[list[int]], waits: list[float], phase: list[float], due: list[float], m: Model,
             rng: random.Random) -> ChunkResult:
    """One chunk, cut at t = 0, through a swarm of listeners with these neighbours and
    waits (the rule's); ``phase``: when each one's manifest poll lists it; ``due``:
    when each expects it (the previous chunk's learning plus a chunk), updated to
    when each learnt of this one."""
    n = len(nbrs)
    behind = [rng.uniform(m.behind_min, m.behind_max) for _ in range(n)]
    emergency = [b - m.chunk - m.emergency_ahead for b in behind]  # after the cut
    has = [float("inf")] * n
    busy = [False] * n  # a request in flight
    learnt = [float("inf")] * n
    slots_free: list[list[float]] = [[0.0] * m.slots for _ in range(n)]
    fetches = 0
    events: list[tuple[float, int, str, int]] = []  # (time, seq, kind, listener)
    seq = 0

    def push(t: float, kind: str, who: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, who))

    def from_server(t: float, who: int) -> None:
        nonlocal fetches
        fetches += 1
        busy[who] = True
        push(t + rng.uniform(m.http_min, m.http_max), "got", who)

    def ask_peer(t: float, who: int) -> bool:
        holders = [j for j in nbrs[who] if has[j] <= t]
        if not holders or t > emergency[who] - m.min_peer_window:
            return False
        # the holder whose upload slot frees first
        j = min(holders, key=lambda j: min(slots_free[j]))
        k = slots_free[j].index(min(slots_free[j]))
        start = max(t, slots_free[j][k])
        done = start + rng.uniform(m.hop_min, m.hop_max)
        deadline = t + min(emergency[who] - t, 2.0)
        if done > deadline:  # the request expires: the server, at the deadline
            slots_free[j][k] = deadline
            busy[who] = True
            push(deadline, "expired", who)
            return True
        slots_free[j][k] = done
        busy[who] = True
        push(done, "got", who)
        return True

    for i in range(n):
        if waits[i] == 0:  # the edge request, answered as the chunk is cut
            fetches += 1
            busy[i] = True
            learnt[i] = 0.0
            push(m.edge_http, "got", i)
            continue
        push(phase[i], "learn", i)
        if waits[i] < m.peer_wait:  # an elected fetcher that waits: from when the chunk is due
            push(min(due[i] + waits[i], emergency[i]), "wait_over", i)

    while events:
        t, _, kind, who = heapq.heappop(events)
        if kind == "got":
            if has[who] <= t:
                continue
            has[who] = t
            busy[who] = False
            for k in nbrs[who]:
                if has[k] == float("inf"):
                    push(t + rng.uniform(0.005, 0.03), "learn", k)  # the HAVE
        elif kind == "learn":
            if has[who] < float("inf") or busy[who]:
                continue
            if learnt[who] == float("inf"):
                learnt[who] = t
                if waits[who] >= m.peer_wait:
                    push(max(t, min(t + waits[who], emergency[who])), "wait_over", who)
            ask_peer(t, who)
        elif kind == "wait_over":
            if has[who] < float("inf") or busy[who]:
                continue
            if not ask_peer(t, who):
                from_server(t, who)
        elif kind == "expired":
            busy[who] = False
            if has[who] == float("inf"):
                from_server(t, who)
    for i in range(n):
        due[i] = min(learnt[i], has[i])
    late = sum(1 for i in range(n) if has[i] > emergency[i])
    return ChunkResult(fetches, max(has), late)


def _ids(n: int, rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits + "-_"
    return ["".join(rng.choice(alphabet) for _ in range(22)) for _ in range(n)]


def run(n: int, rules: Sequence[str], chunks: int, m: Model, seed: int, swarms: int) -> dict[str, dict[str, float]]:
    """Each rule over ``swarms`` random swarms of ``n`` listeners, ``chunks`` chunks each."""
    out: dict[str, dict[str, float]] = {}
    for name in rules:
        rng = random.Random(seed)
        fetches: list[int] = []
        worst: list[float] = []
        late = 0
        degrees: list[int] = []
        for _ in range(swarms):
            ids = _ids(n, rng)
            nbrs = graph(n, m, rng)
            degrees.extend(len(x) for x in nbrs)
            phase = [rng.uniform(0, m.poll) for _ in range(n)]  # polls and chunks both come every second
            due = list(phase)
            for index in range(58_000_000, 58_000_000 + chunks):
                waits = [RULES[name](ids[i], [ids[j] for j in nbrs[i]], index, m) for i in range(n)]
                r = simulate(nbrs, waits, phase, due, m, rng)
                fetches.append(r.fetches)
                worst.append(r.worst)
                late += r.late
        mean = statistics.fmean(fetches)
        out[name] = {
            "fetches": mean,
            "offload": 1 - mean / n,
            "worst_p50": statistics.median(worst),
            "worst_max": max(worst),
            "late": late / (n * len(fetches)),
            "degree": statistics.fmean(degrees),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench live-election",
                                     description="a simulation of the live election rules (not a measurement)")
    parser.add_argument("--peers", type=int, nargs="+", default=[2, 5, 10, 20, 50, 200])
    parser.add_argument("--chunks", type=int, default=200, help="chunks per swarm")
    parser.add_argument("--swarms", type=int, default=3, help="random swarms per size")
    parser.add_argument("--rules", nargs="+", choices=sorted(RULES), default=list(RULES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print one JSON line, last")
    for name, default in Model.__dataclass_fields__.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default.default), default=default.default)
    args = parser.parse_args(argv)
    m = Model(**{k: getattr(args, k) for k in Model.__dataclass_fields__})
    print("Simulation of the rules (bench/live_election.py), not a measurement:")
    print(f"  {m}")
    print(f"{'n':>4} {'rule':<8} {'degree':>6} {'fetches':>8} {'offload':>8} {'worst p50':>9} {'worst max':>9} {'late':>6}")
    every: dict[int, dict[str, dict[str, float]]] = {}
    for n in args.peers:
        every[n] = run(n, args.rules, args.chunks, m, args.seed, args.swarms)
        for name, r in every[n].items():
            print(f"{n:>4} {name:<8} {r['degree']:>6.1f} {r['fetches']:>8.2f} {r['offload']:>8.1%} "
                  f"{r['worst_p50']:>8.2f}s {r['worst_max']:>8.2f}s {r['late']:>6.2%}")
    if args.json:
        print(json.dumps({str(n): v for n, v in every.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
