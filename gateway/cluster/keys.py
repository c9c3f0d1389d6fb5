"""Every Redis key and channel a cluster node uses, in one place (docs/cluster.md).

Keys about one track carry the track id as a hash tag, ``{<track>}``, so that
in a Redis Cluster they live in one slot: the transcode lock's scripts read
and write the owner, fencing and done keys of a track in one ``EVAL``, which
a cluster only runs when all its keys share a slot. Single-key commands
(HSET, HGETALL, SET, PUBLISH) need no tag; the tag costs nothing there.

Track ids are ``[A-Za-z0-9_-]`` (gateway/media/catalog.py), so they never
contain a brace that would change the tag.
"""

from __future__ import annotations

__all__ = [
    "PREFIX", "nodes", "holders", "owner", "fence", "done", "inbox", "BROADCAST",
    "track", "CATALOG_INDEX", "CATALOG_REVISION", "CATALOG_EPOCH", "live_owner", "live_fence",
]

PREFIX = "ztream"

# HASH node id -> JSON {url, seen, stats}; a node rewrites its field every
# heartbeat, readers ignore (and delete) fields older than NODE_TTL.
NODES = f"{PREFIX}:nodes"
# Every node subscribes here too: admin changes and reloads.
BROADCAST = f"{PREFIX}:broadcast"
# The shared catalog (gateway/cluster/catalog.py): ZSET track id -> the revision
# of its last change, the revision counter, and a random name drawn by the first
# node that found the catalog empty (a new one means Redis lost its data). One
# hash tag: the script that bumps a revision touches the first two at once.
CATALOG_INDEX = f"{PREFIX}:{{catalog}}:index"
CATALOG_REVISION = f"{PREFIX}:{{catalog}}:revision"
CATALOG_EPOCH = f"{PREFIX}:{{catalog}}:epoch"


def nodes() -> str:
    return NODES


def holders(track: str, rendition: str) -> str:
    """HASH peer id -> JSON {n: node, r: ranges, c: complete, u: slots in use, s: seen (unix time)}."""
    return f"{PREFIX}:{{{track}}}:holders:{rendition}"


def owner(track: str, rendition: str) -> str:
    """STRING "<node>:<fencing token>", PX = the lock TTL: the node transcoding it now."""
    return f"{PREFIX}:{{{track}}}:owner:{rendition}"


def fence(track: str, rendition: str) -> str:
    """INTEGER: the last fencing token handed out for this track's lock."""
    return f"{PREFIX}:{{{track}}}:fence:{rendition}"


def done(track: str, rendition: str) -> str:
    """STRING node id, EX DONE_TTL: a node whose store holds the finished track."""
    return f"{PREFIX}:{{{track}}}:done:{rendition}"


def live_owner(track: str, rendition: str) -> str:
    """STRING "<node>:<fencing token>", PX = the live lock's TTL: the node ingesting this live station now."""
    return f"{PREFIX}:{{{track}}}:live-owner:{rendition}"


def live_fence(track: str, rendition: str) -> str:
    """INTEGER: the last fencing token handed out for this station's live lock."""
    return f"{PREFIX}:{{{track}}}:live-fence:{rendition}"


def track(track: str) -> str:
    """STRING: the track's catalog record (gateway/cluster/records.py), JSON; a removed track's with an EX."""
    return f"{PREFIX}:{{{track}}}:track"


def inbox(node: str) -> str:
    """Pub/sub channel of one node: signals and introductions for its peers."""
    return f"{PREFIX}:inbox:{{{node}}}"
