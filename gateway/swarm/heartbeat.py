"""``HeartbeatWheel``: when to ping which control socket, and which to give up on.

Theory of operation
-------------------

The rule is aiohttp's own heartbeat (``WebSocketResponse(heartbeat=h)``),
which the control socket used before this wheel: a ping every ``h`` seconds, and
a peer from which nothing at all (a pong or any other frame) has come
``h / 2`` seconds after the ping is dead. What differs is the bookkeeping.
aiohttp keeps one ``TimerHandle`` per socket, with a copy of the context,
two bound methods and three floats (0.6 KB), 1.4 KB more once a ping has
gone (measured, docs/cluster.md), and resets its timer on every chunk read
(a chatty socket was never pinged; here it is, a 2-byte frame a period).
Here one wheel holds every socket: ``SLOTS`` slots ``TICK`` seconds wide,
each the set of sockets whose next event falls in it, advanced by one
loop-wide task. A socket costs a set entry and three small integers on its
connection.

A socket's events, ``every`` ticks apart (drawn per socket: pings of sockets
opened together spread out; a whole slot is handled in one loop iteration,
so a slot holds about a 250th of the sockets, where aiohttp's timers, rounded
to whole seconds, handled a 25th at once):

- ``IDLE`` at its event: ping it; ``PINGED``, next event ``every // 2`` later;
- a frame from the peer (``heard``): ``PINGED`` becomes ``ANSWERED``;
- ``ANSWERED`` at its event: ``IDLE``, next event at the next ping;
- ``PINGED`` at its event: dead, and off the wheel.

Pure: ``now`` is passed in, and nothing here writes to a socket.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

__all__ = ["ANSWERED", "IDLE", "PINGED", "SLOTS", "TICK", "Beating", "HeartbeatWheel", "ticks"]

TICK = 0.1  # seconds a slot spans
SLOTS = 512  # more than the longest wait, in ticks: a slot never wraps onto a live one

IDLE, PINGED, ANSWERED = 0, 1, 2

# Every slot number and wait the wheel stores on a socket, made once: CPython
# shares only the ints up to 256, and a fresh int per socket is 28 bytes.
_INTS = tuple(range(SLOTS))


def ticks(seconds: float) -> int:
    """``seconds`` as a whole number of ticks (at least 2: a ping, then its deadline)."""
    n = max(2, round(seconds / TICK))
    if n >= SLOTS:
        raise ValueError(f"{seconds} s does not fit the wheel ({SLOTS} slots of {TICK} s)")
    return _INTS[n]


class Beating(Protocol):
    """What the wheel keeps on each socket (``__slots__`` of the connection)."""

    beat_slot: int
    beat_state: int
    beat_every: int


B = TypeVar("B", bound=Beating)


class HeartbeatWheel(Generic[B]):
    def __init__(self) -> None:
        self._slots: list[set[B]] = [set() for _ in range(SLOTS)]
        self._tick: int | None = None  # the last tick handled

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._slots)

    def add(self, item: B, every: int, now: float) -> None:
        """A new socket, pinged every ``every`` ticks (``ticks(seconds)``), the first time ``every`` from now."""
        if self._tick is None:
            self._tick = int(now / TICK)
        item.beat_every = every
        item.beat_state = IDLE
        self._put(item, every)

    def remove(self, item: B) -> None:
        """The socket is gone (or never was on the wheel, or is off it as dead)."""
        self._slots[item.beat_slot].discard(item)

    @staticmethod
    def heard(item: B) -> None:
        """A frame came from the peer: it answered, whatever it sent."""
        if item.beat_state == PINGED:
            item.beat_state = ANSWERED

    def advance(self, now: float) -> tuple[list[B], list[B]]:
        """Every tick up to ``now``: the sockets to ping, and the dead ones (now off the wheel).

        A late call (a busy loop) handles the ticks missed, in order, each
        socket at most once: its next event counts from ``now``, so a ping
        sent now is never judged before the peer has had its time to answer.
        """
        ping: list[B] = []
        dead: list[B] = []
        if self._tick is None:
            self._tick = int(now / TICK)
            return ping, dead
        target = int(now / TICK)
        # After a stall longer than the wheel, every slot once is all there is to do.
        tick = max(self._tick, target - SLOTS)
        slots = self._slots
        later: list[tuple[B, int]] = []
        while tick < target:
            tick += 1
            i = tick % SLOTS
            due, slots[i] = slots[i], set()
            for item in due:
                if item.beat_state == IDLE:
                    item.beat_state = PINGED
                    ping.append(item)
                    later.append((item, item.beat_every // 2))
                elif item.beat_state == ANSWERED:
                    item.beat_state = IDLE
                    later.append((item, item.beat_every - item.beat_every // 2))
                else:
                    dead.append(item)
        self._tick = max(self._tick, target)
        for item, wait in later:
            self._put(item, wait)
        return ping, dead

    def _put(self, item: B, wait: int) -> None:
        assert self._tick is not None and 0 < wait < SLOTS
        slot = _INTS[(self._tick + wait) % SLOTS]
        item.beat_slot = slot
        self._slots[slot].add(item)
