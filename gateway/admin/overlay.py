"""The admin overlay file: TOML edited key by key (tomlkit), replaced atomically.

``PUT /v1/admin/sources`` writes its keys into ``<config stem>.admin.toml``
(``config.overlay_path``), which ``load_config`` merges over the main file.
An operator may edit that file too; ``edit_toml`` changes only the keys it is
given, so their comments, key order and alignment survive an admin change.
Every text is read back with ``tomllib`` and compared before it is returned:
what the gateway writes is exactly what it will read.
"""

from __future__ import annotations

import math
import os
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Item, Table

__all__ = ["HEADER", "REMOVE", "dump_toml", "edit_toml", "write_atomic"]


class _Remove:
    """A change that deletes its key (the file's value applies again)."""

    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()

HEADER = (
    "Written by the Ztream admin API (PUT /v1/admin/sources).\n"
    "Merged over the main config file, key by key; delete a key to use the file's value again."
)


def _plain(value: Any) -> Any:
    """What ``tomllib`` reads back for ``value``: lists for tuples, NaN refused."""
    if value is REMOVE:
        return value
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("NaN is not a setting")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"cannot write {type(value).__name__} as TOML")


def _item(value: Any) -> Item:
    """A TOML value; lists and the tables inside them stay on one line (as in config.example.toml)."""
    if isinstance(value, list | tuple):
        array = tomlkit.array()
        for v in value:
            array.append(_item(v))
        return array
    if isinstance(value, Mapping):
        inline = tomlkit.inline_table()
        for k, v in value.items():
            inline[k] = _item(v)
        return inline
    scalar: Item = tomlkit.item(value)
    return scalar


def _expected(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``merge_tables`` that also deletes the keys set to ``REMOVE``."""
    out = dict(base)
    for key, value in changes.items():
        if value is REMOVE:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            out[key] = _expected(out[key] if isinstance(out.get(key), dict) else {}, value)
        else:
            out[key] = value
    return out


def _pruned(tables: dict[str, Any]) -> dict[str, Any]:
    """``tables`` without empty tables (what ``_prune`` leaves of a document)."""
    out: dict[str, Any] = {}
    for key, value in tables.items():
        if isinstance(value, dict):
            value = _pruned(value)
            if not value:
                continue
        out[key] = value
    return out


def _prune(container: Any) -> None:
    """Drop tables a removal left empty, so the overlay keeps no bare ``[sources.url]``."""
    for key in list(container.keys()):
        value = container.get(key)
        if isinstance(value, Mapping):
            _prune(value)
            if not value:
                del container[key]


def _set(container: Any, changes: Mapping[str, Any], *, top: bool) -> None:
    """Set ``changes`` into a tomlkit container: a dict is a table, anything else a value."""
    for key, value in changes.items():
        if value is REMOVE:
            if key in container:
                del container[key]
            continue
        if isinstance(value, Mapping):
            existing = container.get(key)
            if isinstance(existing, Mapping):  # tomlkit tables are mappings: edit in place
                _set(existing, value, top=False)
                continue
            # A table holding only tables is written as [a.b] headers, with no empty [a].
            table: Table = tomlkit.table(is_super_table=bool(value) and all(isinstance(v, Mapping) for v in value.values()))
            _set(table, value, top=False)
            container[key] = table
        elif top:
            raise ValueError("top-level keys are not settings")
        else:
            container[key] = _item(value)


def edit_toml(text: str, changes: Mapping[str, Any], *, header: str = "") -> str:
    """``text`` with ``changes`` (nested tables) set key by key; everything else as it was.

    An empty ``text`` starts a new document under ``header`` (as comments).
    A value ``REMOVE`` deletes its key (a table it leaves empty goes too).
    Raises ``ValueError`` for a ``text`` that is not TOML and for what TOML
    cannot hold (top-level scalars, NaN, lone surrogates).
    """
    removes = any(_removes(changes))
    expected = _expected(tomllib.loads(text), _plain(changes))
    if removes:
        expected = _pruned(expected)
    if text.strip():
        doc = tomlkit.parse(text)
    else:
        doc = tomlkit.document()
        for line in header.splitlines():
            doc.add(tomlkit.comment(line) if line else tomlkit.comment(""))
        if header:
            doc.add(tomlkit.nl())
    _set(doc, changes, top=True)
    if removes:
        _prune(doc)
    out = tomlkit.dumps(doc)
    out.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
    if tomllib.loads(out) != expected:
        raise ValueError("the TOML written does not read back the same")
    return out


def _removes(changes: Mapping[str, Any]) -> list[bool]:
    found: list[bool] = []
    for value in changes.values():
        if value is REMOVE:
            found.append(True)
        elif isinstance(value, Mapping):
            found.extend(_removes(value))
    return found


def dump_toml(tables: Mapping[str, Any], header: str = "") -> str:
    """A new TOML document of ``tables`` (see ``edit_toml``)."""
    return edit_toml("", tables, header=header)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # mkstemp made it 0600, which suits a file with secrets
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
