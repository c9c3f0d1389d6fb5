"""Configuration: one TOML file, validated on a typed model (pydantic v2).

Unknown keys and wrong types are errors that name the key (``server.port:
expected an integer, got 'eighty'``), so a typo never silently falls back to a
default. With no file at all the defaults below apply and the gateway serves
a small demo library. Every key is listed in docs/config.md and, with its
default, in config.example.toml.

The TOML document has the shape of ``_Document`` (``[sources.url]`` is
``sources.url``); ``Config`` is what the rest of the gateway reads, with the
source sections one level up (``config.url``, ``config.local``,
``config.soundcloud``). Both are frozen: a live change makes a new ``Config``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

# The fetcher's own parser is the judge of an allow-list entry.
from .netpolicy import HostPolicy

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
    "TurnConfig",
    "AdminConfig",
    "ClusterConfig",
    "SECRET_KEYS",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "merge_tables",
    "overlay_path",
    "read_config_file",
    "read_overlay",
]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


# -- value types ----------------------------------------------------------------
# TOML gives ints, floats, bools, strings, lists and tables; the strict types
# refuse the others (a float for an int, a bool for a number). Lists arrive as
# Python lists and are kept as tuples, so a Config stays immutable.


def _origin(value: str) -> str:
    if value != "*" and not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not '*' or an http(s) origin")
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR") from None
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _ice_server(value: dict[str, Any]) -> dict[str, Any]:
    if "urls" not in value:
        raise ValueError("expected a table with 'urls'")
    return value


Count = Annotated[StrictInt, Field(ge=0)]
Seconds = Annotated[float, Field(strict=True, gt=0)]
Strings = tuple[StrictStr, ...]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerConfig(_Section):
    host: StrictStr = "127.0.0.1"
    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 8000
    public_url: StrictStr = ""  # empty: http://{host}:{port}
    embed_origins: tuple[Annotated[StrictStr, AfterValidator(_origin)], ...] = ("*",)
    # Tracks one client (an address; a /64 for IPv6) may register (POST /v1/tracks,
    # /player/ URLs and each playlist entry): a burst of this many, refilled evenly
    # over a minute, and at most this many an hour. 0: no limit.
    registrations_per_minute: Count = 30
    registrations_per_hour: Count = 300
    # Requests that wait for a chunk of a running transcode give up after this.
    chunk_wait_seconds: Seconds = 30.0
    # Proxies whose X-Forwarded-For / Forwarded is believed (gateway/http/client_address.py).
    trusted_proxies: tuple[Annotated[StrictStr, AfterValidator(_cidr)], ...] = ()
    # A connection that has not sent a whole request head this long after it
    # opened, or after its last answer, is closed (slowloris, idle keep-alive).
    idle_timeout_seconds: Seconds = 10.0
    # Open connections of the whole process (clamped under the open-file limit at start).
    max_connections: Annotated[StrictInt, Field(ge=1)] = 10_000
    # Open TCP connections from one peer address (a trusted proxy is exempt).
    max_connections_per_client: Annotated[StrictInt, Field(ge=1)] = 256
    # Open control sockets (/v1/ws) of one client address (the forwarded one behind a trusted proxy).
    max_sockets_per_client: Annotated[StrictInt, Field(ge=1)] = 64


class CacheConfig(_Section):
    dir: StrictStr = "~/.cache/ztream"
    max_bytes: Count = 2_000_000_000
    # The track catalog's bounds (records and their bytes); past either, the
    # oldest URL/SoundCloud tracks that never played are evicted.
    max_tracks: Annotated[StrictInt, Field(ge=1)] = 100_000
    max_track_bytes: Annotated[StrictInt, Field(ge=1)] = 64 * 1024 * 1024


class TranscodeConfig(_Section):
    ffmpeg: StrictStr = ""
    bitrate: Annotated[StrictInt, Field(ge=6000, le=510000)] = 96000  # what libopus takes, bit/s
    chunk_seconds: Annotated[float, Field(strict=True, ge=0.5, le=10)] = 2.0
    timeout_seconds: Seconds = 600.0
    max_concurrent: Count = 4
    # Of max_concurrent, slots only library tracks and already-cached tracks use
    # (URL and SoundCloud registrations can never take them all).
    reserved_slots: Count = 1
    # Running plus waiting transcodes one client (an address; a /64 for IPv6)
    # started, and of URL tracks on one upstream host. 0: no limit.
    max_per_client: Count = 2
    max_per_host: Count = 2
    # A transcode that, past the grace, produced less than this many seconds
    # of audio per second of holding a slot loses it. 0 turns the check off.
    min_speed: Annotated[float, Field(strict=True, ge=0)] = 1.0
    speed_grace_seconds: Seconds = 10.0


class UrlSourceConfig(_Section):
    allow_hosts: Strings = ()
    max_bytes: Count = 200_000_000
    max_duration_seconds: Seconds = 3600.0
    connect_timeout: Seconds = 5.0
    read_timeout: Seconds = 15.0
    # A body slower than this (judged over 5 s of waiting) ends the fetch;
    # 0 turns the check off. 2000 B/s is under any real audio bitrate.
    min_bytes_per_second: Annotated[StrictInt, Field(ge=0)] = 2000

    @field_validator("allow_hosts")
    @classmethod
    def _host_policy(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            HostPolicy(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return value


class LocalSourceConfig(_Section):
    dirs: Strings = ()
    # With no dirs, generate a few demo tracks on first start, so that a new
    # gateway plays something whatever else its file says; false turns it off.
    demo: StrictBool = True


class SoundCloudConfig(_Section):
    client_id: StrictStr = ""
    client_secret: Annotated[StrictStr, Field(repr=False)] = ""  # a secret: kept out of reprs too
    api_base: Annotated[StrictStr, AfterValidator(_http_url)] = "https://api-v2.soundcloud.com"
    auth_base: Annotated[StrictStr, AfterValidator(_http_url)] = "https://secure.soundcloud.com"

    @model_validator(mode="after")
    def _auto_is_api_v2(self) -> SoundCloudConfig:
        if self.client_id == "auto" and self.client_secret:
            raise ValueError('client_id "auto" works with api-v2 only (no client_secret)')
        return self


def _network_name(value: str) -> str:
    if not 1 <= len(value) <= 64 or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in value):
        raise ValueError(f"{value!r} is not a network name (1..64 of A-Z a-z 0-9 - _ .)")
    return value


def _turn_url(value: str) -> str:
    if not value.startswith(("turn:", "turns:")):
        raise ValueError(f"{value!r} is not a turn: or turns: URL")
    return value


class TurnConfig(_Section):
    # coturn use-auth-secret: per-peer credentials minted from the shared secret (docs/p2p.md).
    urls: tuple[Annotated[StrictStr, AfterValidator(_turn_url)], ...] = ()
    secret: Annotated[StrictStr, Field(repr=False)] = ""
    # Minutes, not days: a peer renews over its control socket while it lives.
    ttl_seconds: Annotated[StrictInt, Field(ge=60, le=3600)] = 600

    @model_validator(mode="after")
    def _both_or_neither(self) -> TurnConfig:
        if bool(self.urls) != bool(self.secret):
            raise ValueError("urls and secret go together (both set, or both empty)")
        return self


def _upload_policy(value: str) -> str:
    if value not in UPLOAD_POLICIES:
        raise ValueError(f"{value!r} is not one of " + ", ".join(repr(p) for p in UPLOAD_POLICIES))
    return value


# Listeners' upload policy (docs/p2p.md, "Listeners' consent"), strictest last.
UPLOAD_POLICIES = ("on", "opt-in", "off")


class P2PConfig(_Section):
    ice_servers: tuple[Annotated[dict[str, Any], AfterValidator(_ice_server)], ...] = ()
    upload_slots: Annotated[StrictInt, Field(ge=1)] = 4
    # -1: the HTTP port's number (UDP); 0: no STUN responder.
    stun_port: Annotated[StrictInt, Field(ge=-1, le=65535)] = -1
    # No introductions until a track has at least this many listeners (privacy).
    min_listeners: Annotated[StrictInt, Field(ge=0, le=1000)] = 0
    # Whether listeners upload: "on", "opt-in" (each listener is asked first), "off".
    upload: Annotated[StrictStr, AfterValidator(_upload_policy)] = "on"
    # Each listener's upload cap in kbit/s (0: none); a home uplink keeps most of its room.
    upload_kbps: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 1000
    turn: TurnConfig = TurnConfig()
    # Network name -> its prefixes: the tracker prefers candidates in the asker's network.
    networks: dict[Annotated[StrictStr, AfterValidator(_network_name)],
                   tuple[Annotated[StrictStr, AfterValidator(_cidr)], ...]] = Field(default_factory=dict)
    # A MaxMind DB file of autonomous systems (GeoLite2-ASN, DB-IP ASN Lite): networks
    # the prefixes do not name. Empty: none. Read once at start, never downloaded.
    asn_database: StrictStr = ""

    @field_validator("networks")
    @classmethod
    def _one_name_per_prefix(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        seen: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
        for name, cidrs in value.items():
            for cidr in cidrs:
                net = ipaddress.ip_network(cidr, strict=False)
                if seen.get(net, name) != name:
                    raise ValueError(f"{cidr} is listed under both {seen[net]!r} and {name!r}")
                seen[net] = name
        return value


class LiveStationConfig(_Section):
    """A station declared by the operator (docs/live.md): registered at start-up as a live track."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    url: Annotated[StrictStr, AfterValidator(_http_url)]
    # "always": ingest from start-up, listeners or not; "on-demand": with the first listener.
    mode: Literal["always", "on-demand"] = "on-demand"


class LiveConfig(_Section):
    # Chunk length of live renditions: short, for latency at the edge.
    chunk_seconds: Annotated[float, Field(strict=True, ge=0.5, le=10)] = 1.0
    # The manifest's sliding window; older chunks are dropped (410 gone).
    window_seconds: Annotated[float, Field(strict=True, ge=5, le=3600)] = 60.0
    # An ingest stops this long after the last listener's request.
    idle_seconds: Seconds = 30.0
    # How far behind the newest chunk's end a player starts (told in the manifest).
    start_behind_seconds: Annotated[float, Field(strict=True, ge=0, le=60)] = 3.0
    # Live ingests running at once; more are refused (503).
    max_stations: Annotated[StrictInt, Field(ge=1, le=1000)] = 16
    # The longest wait between two attempts to reopen a dropped upstream.
    reconnect_max_seconds: Seconds = 10.0
    stations: tuple[LiveStationConfig, ...] = ()

    @model_validator(mode="after")
    def _window_holds_chunks(self) -> LiveConfig:
        if self.window_seconds < 3 * self.chunk_seconds:
            raise ValueError("window_seconds must hold at least 3 chunks (3 x chunk_seconds)")
        if self.start_behind_seconds >= self.window_seconds:
            raise ValueError("start_behind_seconds must be under window_seconds")
        if len(self.stations) > self.max_stations:
            raise ValueError(f"{len(self.stations)} stations declared, max_stations is {self.max_stations}")
        if len({station.url for station in self.stations}) != len(self.stations):
            raise ValueError("two stations have the same url")
        return self


class AdminConfig(_Section):
    token: Annotated[StrictStr, Field(repr=False)] = ""


def _redis_url(value: str) -> str:
    if value and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{value!r} is not a redis://, rediss:// or unix:// URL")
    return value


def _node_url(value: str) -> str:
    return _http_url(value) if value else value


class ClusterConfig(_Section):
    # Empty: one process, no Redis, exactly the single-node behaviour (docs/cluster.md).
    redis_url: Annotated[StrictStr, AfterValidator(_redis_url), Field(repr=False)] = ""
    node_url: Annotated[StrictStr, AfterValidator(_node_url)] = ""  # empty: http://{host}:{port}
    node_id: StrictStr = ""  # empty: random per start


class Config(_Section):
    server: ServerConfig = ServerConfig()
    cache: CacheConfig = CacheConfig()
    transcode: TranscodeConfig = TranscodeConfig()
    url: UrlSourceConfig = UrlSourceConfig()
    local: LocalSourceConfig = LocalSourceConfig()
    soundcloud: SoundCloudConfig = SoundCloudConfig()
    p2p: P2PConfig = P2PConfig()
    admin: AdminConfig = AdminConfig()
    cluster: ClusterConfig = ClusterConfig()
    live: LiveConfig = LiveConfig()

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


class _Sources(_Section):
    url: UrlSourceConfig = UrlSourceConfig()
    local: LocalSourceConfig = LocalSourceConfig()
    soundcloud: SoundCloudConfig = SoundCloudConfig()


class _Document(_Section):
    """The TOML file's shape; its error locations are the file's dotted keys."""

    server: ServerConfig = ServerConfig()
    cache: CacheConfig = CacheConfig()
    transcode: TranscodeConfig = TranscodeConfig()
    sources: _Sources = _Sources()
    p2p: P2PConfig = P2PConfig()
    admin: AdminConfig = AdminConfig()
    cluster: ClusterConfig = ClusterConfig()
    live: LiveConfig = LiveConfig()


# Keys whose values are never shown: not in errors, logs or admin answers.
SECRET_KEYS = frozenset({"sources.soundcloud.client_secret", "admin.token", "p2p.turn.secret", "cluster.redis_url"})

# Config attribute -> TOML table.
_TABLES = {
    "server": "server",
    "cache": "cache",
    "transcode": "transcode",
    "url": "sources.url",
    "local": "sources.local",
    "soundcloud": "sources.soundcloud",
    "p2p": "p2p",
    "admin": "admin",
    "cluster": "cluster",
    "live": "live",
}


# -- errors that name the key ---------------------------------------------------------

# pydantic error type -> our wording; the offending value follows (", got 'x'").
_TYPE_ERRORS = {
    "bool_type": "expected true or false",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "string_type": "expected a string",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
}


def _key(loc: Sequence[int | str]) -> str:
    """``("sources", "url", "allow_hosts", 0)`` -> ``sources.url.allow_hosts[0]``."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key


def _message(error: ErrorDetails) -> str:
    loc = error["loc"]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    key = _key(loc)
    if kind == "extra_forbidden":
        section = len(loc) == 1 or (len(loc) == 2 and loc[0] == "sources")
        return f"{key}: unknown {'section' if section else 'key'}"
    if kind in _TYPE_ERRORS:
        text = _TYPE_ERRORS[kind]
        # Never echo a secret, even a mistyped one.
        if not any(key.startswith(secret) for secret in SECRET_KEYS):
            text += f", got {error['input']!r}"
        return f"{key}: {text}"
    if kind == "value_error":
        return f"{key}: {ctx.get('error', error['msg'])}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        if bound == 0:
            return f"{key}: {'must not be negative' if kind == 'greater_than_equal' else 'must be positive'}"
        return f"{key}: must be at least {bound}" if kind == "greater_than_equal" else f"{key}: must exceed {bound}"
    if kind == "less_than_equal":
        return f"{key}: must be at most {ctx['le']}"
    return f"{key}: {error['msg']}"  # pragma: no cover - a check added without a wording above


def _config_error(exc: ValidationError) -> ConfigError:
    return ConfigError("; ".join(_message(error) for error in exc.errors(include_url=False)))


# -- reading and writing ------------------------------------------------------------------


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build a validated ``Config`` from parsed TOML; raises ``ConfigError`` naming every bad key."""
    try:
        doc = _Document.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc) from None
    return Config(
        server=doc.server,
        cache=doc.cache,
        transcode=doc.transcode,
        url=doc.sources.url,
        local=doc.sources.local,
        soundcloud=doc.sources.soundcloud,
        p2p=doc.p2p,
        admin=doc.admin,
        cluster=doc.cluster,
        live=doc.live,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The tables of the operator's file alone, validated; raises ``ConfigError`` naming the key."""
    data = _read_toml(Path(path))
    config_from_dict(data)
    return data


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


def _plain(value: Any) -> Any:
    """A TOML value of the model: tuples back to lists, tables copied."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """The TOML tables of ``config`` (every key), such that ``config_from_dict`` gives it back."""
    out: dict[str, Any] = {}
    for attr, table in _TABLES.items():
        section: BaseModel = getattr(config, attr)
        values = {name: _plain(getattr(section, name)) for name in type(section).model_fields}
        node = out
        *parents, leaf = table.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = values
    return out


def load_config(path: str | Path | None, *, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate a TOML file, its admin overlay (``overlay_path``) and ``overrides``.

    ``None`` gives the defaults. Precedence, key by key: ``overrides`` (the
    command line: ``--host``, ``--port``) over the overlay over the file over
    the defaults. An error in the overlay names that file.
    """
    over_cli = dict(overrides or {})
    if path is None:
        data: dict[str, Any] = {}
        overlay = overlay_path(None, Path(CacheConfig().dir).expanduser())
    else:
        data = _read_toml(Path(path))
        config = config_from_dict(data)
        overlay = overlay_path(path, config.cache_dir)
    over = read_overlay(overlay)
    if over:
        try:
            config_from_dict(merge_tables(data, over))
        except ConfigError as exc:
            raise ConfigError(f"{overlay}: {exc}") from None
    return config_from_dict(merge_tables(merge_tables(data, over), over_cli))


# The configuration the app started with; what is current now (sources and
# admin change at run time) is LIVE_CONFIG.current.
CONFIG = web.AppKey("config", Config)
