"""The shared catalog's records and how two versions of one become one (pure: no I/O, times passed in).

Theory of operation
-------------------

Redis holds one ``Record`` per track (docs/cluster.md, "One catalog"). A
record is a map of *fields*, each with the time it was last set, plus the
time of the track's last removal:

- the ``Track``'s own fields (``title``, ``duration``, ``listed``, ...), and
  ``played`` (a transcode of it completed: never evicted to make room);
- ``at:<node>``: ``True`` when that node's library holds the track's file
  (other nodes pull a library track from one of them).

A node never sends its whole view of a track, only what changed (``delta``):
the fields its catalog just set, stamped with the node's clock. ``merge`` is
a last-writer-wins map: field by field the later time wins (equal times: the
larger value by its JSON text, so that every node picks the same one); the
removal time is the later of the two. A field set no later than the removal
is not part of the track any more; the track exists while its ``id`` was
set after the last removal (a registration after a purge brings it back,
whole: a registration sets every field).

``merge`` is commutative, associative and idempotent, so the order in which
nodes' changes reach Redis does not matter, nor does a change applied twice:
what a node changed while Redis was away is merged in when it comes back,
and nothing registered meanwhile is lost. Records a node re-seeds after
Redis lost its data are stamped with time 0: they fill what is missing and
never win over what another node set since. Clocks of different machines
only matter for two changes of one field within their skew of each other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Record", "delta", "removal", "merge", "decode", "encode", "AT"]

# Field-name prefix of "this node's library holds the file".
AT = "at:"


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Record:
    """One track's fields, each with the time it was set, and the time of its last removal (0: never)."""

    values: Mapping[str, Any] = field(default_factory=dict)
    clocks: Mapping[str, float] = field(default_factory=dict)
    removed: float = 0.0

    @property
    def alive(self) -> bool:
        """The track exists: registered after its last removal."""
        return "id" in self.values and (self.removed == 0.0 or self.clocks.get("id", 0.0) > self.removed)

    def fields(self) -> dict[str, Any]:
        """The live fields (set after the last removal), without the ``at:`` ones."""
        return {k: v for k, v in self.values.items() if not k.startswith(AT) and self._live(k)}

    def holders(self) -> list[str]:
        """The nodes whose library holds the file, sorted."""
        return sorted(k[len(AT):] for k, v in self.values.items() if k.startswith(AT) and v is True and self._live(k))

    def _live(self, name: str) -> bool:
        return self.removed == 0.0 or self.clocks.get(name, 0.0) > self.removed


def delta(fields: Mapping[str, Any], now: float) -> Record:
    """The change that set ``fields`` at ``now``."""
    return Record(dict(fields), {k: now for k in fields})


def removal(now: float) -> Record:
    """The change that removed the track at ``now`` (a purge, an eviction)."""
    return Record(removed=now)


def _wins(mine: tuple[float, Any], theirs: tuple[float, Any]) -> bool:
    if mine[0] != theirs[0]:
        return mine[0] > theirs[0]
    return _text(mine[1]) > _text(theirs[1])


def merge(a: Record | None, b: Record) -> Record:
    """One record from two versions of it (either may be a ``delta`` or a ``removal``)."""
    if a is None:
        return b
    values = dict(a.values)
    clocks = dict(a.clocks)
    for name, value in b.values.items():
        clock = b.clocks.get(name, 0.0)
        if name not in values or _wins((clock, value), (clocks.get(name, 0.0), values[name])):
            values[name] = value
            clocks[name] = clock
    removed = max(a.removed, b.removed)
    # What a removal outdated is dropped for good: it can never count again, and
    # the record stays as small as the track's live fields.
    if removed:
        for name in [n for n, c in clocks.items() if c <= removed]:
            del values[name], clocks[name]
    return Record(values, clocks, removed)


def encode(record: Record) -> str:
    """The record as Redis keeps it: ``{"v": values, "c": clocks, "x": removed}``."""
    return json.dumps({"v": record.values, "c": record.clocks, "x": record.removed}, separators=(",", ":"))


def decode(raw: str | bytes | None) -> Record | None:
    """``encode``'s inverse; ``None`` for nothing or anything else (a record that cannot be read is none)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        values, clocks, removed = data["v"], data["c"], float(data["x"])
        if not isinstance(values, dict) or not isinstance(clocks, dict):
            return None
        return Record(values, {str(k): float(v) for k, v in clocks.items() if k in values}, removed)
    except (ValueError, KeyError, TypeError):
        return None
