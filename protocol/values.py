"""The values control messages carry: chunk sets, candidates, JSON.

``ChunkSet`` is what a ``have`` announces and the tracker keeps per holding;
``Candidate`` is one holder in a ``peers`` answer. Both are frozen and pure,
so the messages (``messages.py``), the codec and the tracker share them
without importing each other. ``BadChunks`` is the one error they raise: a
chunk index out of range or a holding too fragmented, the wire error code
``bad_field``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from .limits import MAX_INDEX, MAX_RANGES

__all__ = ["BadChunks", "Candidate", "ChunkSet", "Json"]

# A JSON value as ``json.loads`` returns it (what a message passes through unread).
Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]


class BadChunks(ValueError):
    """Chunk indices refused: out of ``0 .. max_index``, or more runs than
    ``max_ranges``; ``code`` is the wire error code."""

    code = "bad_field"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ChunkSet:
    """An immutable set of chunk indices, kept as sorted, disjoint, non-adjacent
    inclusive runs ``(first, last)``.

    ``ChunkSet.of([0, 1, 2, 7])`` has the runs ``((0, 2), (7, 7))``; on the wire
    that is ``"ranges": [[0, 2], [7, 7]]``.
    """

    runs: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, indices: Iterable[int], *, max_index: int = MAX_INDEX, max_ranges: int = MAX_RANGES) -> ChunkSet:
        """From chunk indices (any order, duplicates allowed); raises ``BadChunks``."""
        return cls.from_ranges(((i, i) for i in indices), max_index=max_index, max_ranges=max_ranges)

    @classmethod
    def from_ranges(
        cls, ranges: Iterable[tuple[int, int]], *, max_index: int = MAX_INDEX, max_ranges: int = MAX_RANGES
    ) -> ChunkSet:
        """From inclusive runs ``(first, last)`` (any order, overlaps allowed); raises ``BadChunks``."""
        pairs = []
        for first, last in ranges:
            if not 0 <= first <= last <= max_index:
                raise BadChunks(f"chunk range [{first}, {last}] is not within 0..{max_index}")
            pairs.append((first, last))
        return cls(_merge(pairs, max_ranges))

    def union(self, other: ChunkSet, *, max_ranges: int = MAX_RANGES) -> ChunkSet:
        """Both sets together; raises ``BadChunks`` past ``max_ranges`` runs."""
        if not other.runs:
            return self
        if not self.runs:
            return other
        return ChunkSet(_merge([*self.runs, *other.runs], max_ranges))

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        at = bisect.bisect_right(self.runs, index, key=_first) - 1
        return at >= 0 and self.runs[at][0] <= index <= self.runs[at][1]

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self.runs)

    def __bool__(self) -> bool:
        return bool(self.runs)

    def among(self, indices: Iterable[int]) -> tuple[int, ...]:
        """Those of ``indices`` in this set, in the order given."""
        return tuple(i for i in indices if i in self)

    def ranges(self) -> list[list[int]]:
        """The wire form: ``[[first, last], ...]``, inclusive."""
        return [[first, last] for first, last in self.runs]


def _first(run: tuple[int, int]) -> int:
    return run[0]


def _merge(pairs: list[tuple[int, int]], max_ranges: int) -> tuple[tuple[int, int], ...]:
    pairs.sort()
    merged: list[tuple[int, int]] = []
    for first, last in pairs:
        # Adjacent runs merge too ([0, 2] and [3, 5] are [0, 5]): one canonical form.
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
            if len(merged) > max_ranges:
                raise BadChunks(f"more than {max_ranges} separate chunk ranges in one holding")
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A holder offered to an asker: its id, which of the asked chunks it holds
    (in the order asked), and whether it holds the whole track."""

    peer_id: str
    chunks: tuple[int, ...]
    complete: bool = False
