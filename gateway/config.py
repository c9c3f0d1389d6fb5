"""Configuration: one TOML file, validated into frozen dataclasses.

Unknown keys and wrong types are errors that name the key (``server.port:
expected an integer``), so a typo never silently falls back to a default.
With no file at all the defaults below apply and the gateway serves a small
demo library.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

__all__ = [
    "CONFIG",
    "Config",
    "ConfigError",
    "ServerConfig",
    "CacheConfig",
    "TranscodeConfig",
    "UrlSourceConfig",
    "LocalSourceConfig",
    "SoundCloudConfig",
    "P2PConfig",
    "AdminConfig",
    "SECRET_KEYS",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "merge_tables",
    "overlay_path",
    "read_overlay",
]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""  # empty: http://{host}:{port}
    embed_origins: tuple[str, ...] = ("*",)
    # Requests that wait for a chunk of a running transcode give up after this.
    chunk_wait_seconds: float = 30.0


@dataclass(frozen=True)
class CacheConfig:
    dir: str = "~/.cache/ztream"
    max_bytes: int = 2_000_000_000


@dataclass(frozen=True)
class TranscodeConfig:
    ffmpeg: str = ""
    bitrate: int = 96000
    chunk_seconds: float = 2.0
    timeout_seconds: float = 600.0
    max_concurrent: int = 4


@dataclass(frozen=True)
class UrlSourceConfig:
    allow_hosts: tuple[str, ...] = ()
    max_bytes: int = 200_000_000
    max_duration_seconds: float = 3600.0
    connect_timeout: float = 5.0
    read_timeout: float = 15.0


@dataclass(frozen=True)
class LocalSourceConfig:
    dirs: tuple[str, ...] = ()
    # With no dirs and no config file, generate a few demo tracks on first start.
    demo: bool = False


@dataclass(frozen=True)
class SoundCloudConfig:
    client_id: str = ""
    client_secret: str = ""
    api_base: str = "https://api-v2.soundcloud.com"
    auth_base: str = "https://secure.soundcloud.com"


@dataclass(frozen=True)
class P2PConfig:
    ice_servers: tuple[dict[str, Any], ...] = ()
    upload_slots: int = 4


@dataclass(frozen=True)
class AdminConfig:
    token: str = ""


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    transcode: TranscodeConfig = field(default_factory=TranscodeConfig)
    url: UrlSourceConfig = field(default_factory=UrlSourceConfig)
    local: LocalSourceConfig = field(default_factory=LocalSourceConfig)
    soundcloud: SoundCloudConfig = field(default_factory=SoundCloudConfig)
    p2p: P2PConfig = field(default_factory=P2PConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)

    @property
    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = self.server.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.server.port}"

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache.dir).expanduser()


# Keys whose values are never shown: not in errors, logs or admin answers.
SECRET_KEYS = frozenset({"sources.soundcloud.client_secret", "admin.token"})

# TOML table -> (Config attribute, section class)
_SECTIONS: dict[str, tuple[str, type]] = {
    "server": ("server", ServerConfig),
    "cache": ("cache", CacheConfig),
    "transcode": ("transcode", TranscodeConfig),
    "sources.url": ("url", UrlSourceConfig),
    "sources.local": ("local", LocalSourceConfig),
    "sources.soundcloud": ("soundcloud", SoundCloudConfig),
    "p2p": ("p2p", P2PConfig),
    "admin": ("admin", AdminConfig),
}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of the field's default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if value <= 0:
            raise ConfigError(f"{key}: must be positive")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if key == "p2p.ice_servers":
            if not all(isinstance(v, dict) and "urls" in v for v in value):
                raise ConfigError(f"{key}: expected a list of tables with 'urls'")
        elif not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings")
        return tuple(value)
    raise ConfigError(f"{key}: unsupported value {value!r}")  # pragma: no cover


def _validate(config: Config) -> None:
    s = config.server
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"server.port: {s.port} is not a TCP port")
    for origin in s.embed_origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(f"server.embed_origins: {origin!r} is not '*' or an http(s) origin")
    if not 6000 <= config.transcode.bitrate <= 510000:
        raise ConfigError("transcode.bitrate: libopus takes 6000..510000 bit/s")
    if not 0.5 <= config.transcode.chunk_seconds <= 10:
        raise ConfigError("transcode.chunk_seconds: must be within 0.5..10")
    from .sources.netpolicy import HostPolicy

    try:
        HostPolicy(config.url.allow_hosts)
    except ValueError as exc:
        raise ConfigError(f"sources.url.allow_hosts: {exc}") from None
    if config.p2p.upload_slots < 1:
        raise ConfigError("p2p.upload_slots: must be at least 1")
    if config.soundcloud.client_id == "auto" and config.soundcloud.client_secret:
        raise ConfigError('sources.soundcloud.client_id: "auto" works with api-v2 only (no client_secret)')
    for key in ("api_base", "auth_base"):
        value = getattr(config.soundcloud, key)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ConfigError(f"sources.soundcloud.{key}: {value!r} is not an http(s) URL")


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a validated ``Config`` from parsed TOML; raises ``ConfigError``."""
    sections: dict[str, Any] = {}
    tables = dict(data)
    sources = tables.pop("sources", {})
    if not isinstance(sources, dict):
        raise ConfigError("sources: expected a table")
    for name, value in sources.items():
        tables[f"sources.{name}"] = value
    for name, table in tables.items():
        if name not in _SECTIONS:
            raise ConfigError(f"{name}: unknown section")
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: expected a table")
        attr, cls = _SECTIONS[name]
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"{name}.{key}: unknown key")
            try:
                values[key] = _coerce(f"{name}.{key}", value, getattr(defaults, key))
            except ConfigError as exc:
                if f"{name}.{key}" in SECRET_KEYS:  # never echo a secret, even a mistyped one
                    raise ConfigError(str(exc).split(", got ", 1)[0]) from None
                raise
        sections[attr] = cls(**values)
    config = Config(**sections)
    _validate(config)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def overlay_path(config_path: str | Path | None, cache_dir: Path) -> Path:
    """Where the admin API writes its changes: ``<config stem>.admin.toml`` beside
    the config file, or ``admin.toml`` in the cache directory with no file."""
    if config_path is None:
        return cache_dir / "admin.toml"
    return Path(config_path).with_suffix(".admin.toml")


def read_overlay(path: Path) -> dict[str, Any]:
    """The overlay's tables, ``{}`` when there is none; raises ``ConfigError``."""
    if not path.exists():
        return {}
    data = _read_toml(path)
    try:
        config_from_dict(data)  # its own keys and types, named with the file
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data


def merge_tables(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, table by table (values, lists included, replace)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_tables(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_to_dict(config: Config) -> dict[str, Any]:
    """The TOML tables of ``config`` (every key), such that ``config_from_dict`` gives it back."""
    out: dict[str, Any] = {}
    for name, (attr, _cls) in _SECTIONS.items():
        values = {}
        for f in dataclasses.fields(getattr(config, attr)):
            value = getattr(getattr(config, attr), f.name)
            values[f.name] = [dict(v) if isinstance(v, dict) else v for v in value] if isinstance(value, tuple) else value
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = values
    return out


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML file and its admin overlay (``overlay_path``), if any.

    ``None`` gives the defaults with the demo library. The overlay's values
    replace the file's key by key; an error in the overlay names that file.
    """
    if path is None:
        data = config_to_dict(Config(local=LocalSourceConfig(demo=True)))
        overlay = overlay_path(None, Path(CacheConfig().dir).expanduser())
    else:
        data = _read_toml(Path(path))
        config = config_from_dict(data)
        overlay = overlay_path(path, config.cache_dir)
    over = read_overlay(overlay)
    if not over:
        return config_from_dict(data)
    try:
        return config_from_dict(merge_tables(data, over))
    except ConfigError as exc:
        raise ConfigError(f"{overlay}: {exc}") from None


# The configuration the app started with; what is current now (sources and
# admin change at run time) is LIVE_CONFIG.current.
CONFIG = web.AppKey("config", Config)
