"""docs/ is the contract: what the code has, the pages document, and nothing more.

Each test compares one page with the running code, not with a copy of it:

- every key of ``config.example.toml`` has a row in ``docs/config.md`` with the
  same default, every row there is a key of the file, and the file's values
  are the loader's defaults;
- every metric family the app registers has a row in ``docs/metrics.md`` with
  its type and labels (and, for ``ztream_*``, every fixed label value);
- every route ``create_app`` registers has a row in ``docs/http.md`` with
  exactly its methods, and every route row there is registered;
- every error code written in ``gateway/`` appears in ``docs/http.md`` or
  ``docs/websocket.md``.

The app is built and its router read without starting it (no ffmpeg, no
socket). Only ``gateway.app.create_app`` and the config loader are imported,
so moving modules around inside ``gateway/`` does not break this file.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.admin.live import flatten
from gateway.app import create_app
from gateway.config import load_config as load
from tests.support.paths import ROOT

DOCS = ROOT / "docs"
EXAMPLE = ROOT / "config.example.toml"

_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_CODE_CELL = re.compile(r"^`([^`]+)`$")


def table_rows(page: Path) -> list[list[str]]:
    """The cells of every Markdown table row of ``page`` (separator rows left out)."""
    rows = []
    for line in page.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")) or set(line) <= set("|-: "):
            continue
        rows.append([cell.strip() for cell in _CELL_SPLIT.split(line[1:-1])])
    return rows


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    empty = tmp_path / "ztream.toml"
    empty.write_text(f'[cache]\ndir = "{tmp_path / "cache"}"\n[sources.local]\ndemo = false\n', encoding="utf-8")
    return create_app(load(empty))


# -- config -------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list of strings": (list,),
    "list of tables": (list,),
}


def documented_keys() -> dict[str, tuple[str, str]]:
    """``key -> (type, default literal)`` from the tables of docs/config.md."""
    keys: dict[str, tuple[str, str]] = {}
    for cells in table_rows(DOCS / "config.md"):
        match = _CODE_CELL.match(cells[0])
        if match is None or "." not in match.group(1) or " " in match.group(1):
            continue
        assert len(cells) >= 4, f"docs/config.md: the row of {cells[0]} needs key | type | default | ... cells"
        default = _CODE_CELL.match(cells[2])
        assert default is not None, f"docs/config.md: the default of {cells[0]} is not one `literal`"
        assert match.group(1) not in keys, f"docs/config.md: {cells[0]} has two rows"
        keys[match.group(1)] = (cells[1], default.group(1))
    return keys


def test_every_config_key_is_documented_with_its_default() -> None:
    example = flatten(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    documented = documented_keys()
    missing = sorted(set(example) - set(documented))
    stale = sorted(set(documented) - set(example))
    assert not missing, f"keys of config.example.toml missing from docs/config.md: {missing}"
    assert not stale, f"docs/config.md documents keys config.example.toml does not have: {stale}"
    for key, (kind, literal) in documented.items():
        assert kind in _TYPES, f"docs/config.md: {key} has type {kind!r}, not one of {sorted(_TYPES)}"
        value = tomllib.loads(f"v = {literal}")["v"]
        assert value == example[key], f"docs/config.md: {key} defaults to {literal}, config.example.toml says {example[key]!r}"
        assert isinstance(example[key], _TYPES[kind]), f"{key}: {example[key]!r} is not a {kind}"
        assert kind != "number" or not isinstance(example[key], bool)


def test_config_example_holds_the_loaders_defaults(tmp_path: Path) -> None:
    # Copied, so that the loader looks for its admin overlay in tmp_path only.
    example = tmp_path / "example.toml"
    example.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    assert load(example) == load(empty)


# -- metrics -------------------------------------------------------------------


def registered_families(app: web.Application) -> dict[str, tuple[str, set[str], set[str]]]:
    """``exposed name -> (type, label names, label values)`` of the app's registry."""
    registries = [
        value.registry
        for value in (app[key] for key in app)
        if isinstance(getattr(value, "registry", None), CollectorRegistry)
    ]
    assert len(registries) == 1, "expected one metrics object with a CollectorRegistry on the app"
    families = {}
    for family in registries[0].collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {(k, v) for sample in family.samples for k, v in sample.labels.items() if k != "le"}
        families[name] = (family.type, {k for k, _ in labels}, {v for _, v in labels})
    return families


# Labelled families whose series appear only with what they count (a live
# station's track id): with no series, the registry shows no label names.
_SERIES_ON_DEMAND = {"ztream_live_listeners"}


def test_every_metric_is_documented(app: web.Application) -> None:
    documented: dict[str, list[str]] = {}
    for cells in table_rows(DOCS / "metrics.md"):
        match = _CODE_CELL.match(cells[0])
        if match is not None and re.fullmatch(r"[a-z0-9_]+", match.group(1)) and len(cells) >= 4:
            documented[match.group(1)] = cells
    registered = registered_families(app)
    assert len(registered) > 10
    missing = sorted(set(registered) - set(documented))
    stale = sorted(set(documented) - set(registered))
    assert not missing, f"metrics the app registers missing from docs/metrics.md: {missing}"
    assert not stale, f"docs/metrics.md documents metrics the app does not register: {stale}"
    for name, (kind, label_names, label_values) in registered.items():
        _name, doc_type, doc_labels, _meaning = documented[name][:4]
        assert doc_type == kind, f"docs/metrics.md: {name} is a {kind}, documented as {doc_type!r}"
        for label in label_names:
            assert f"`{label}`" in doc_labels, f"docs/metrics.md: label {label!r} of {name} is not documented"
        if name.startswith("ztream_"):
            for value in label_values:
                assert f"`{value}`" in doc_labels, f"docs/metrics.md: {name} label value {value!r} is not documented"
        if not label_names and name not in _SERIES_ON_DEMAND:
            assert doc_labels in ("", "none"), f"docs/metrics.md: {name} has no labels, documented {doc_labels!r}"


# -- routes --------------------------------------------------------------------


def test_every_route_is_documented(app: web.Application) -> None:
    registered: dict[str, set[str]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert isinstance(path, str), f"a route with no path: {route!r}"
        registered.setdefault(path, set()).add(route.method)
    documented: dict[str, set[str]] = {}
    for cells in table_rows(DOCS / "http.md"):
        if len(cells) < 3 or not re.fullmatch(r"(`[A-Z*]+`\s*)+", cells[0]):
            continue
        cell = _CODE_CELL.match(cells[1])
        if cell is None or not cell.group(1).startswith("/"):
            continue
        methods = set(re.findall(r"`([A-Z*]+)`", cells[0]))
        documented.setdefault(cell.group(1), set()).update(methods)
    assert len(registered) > 10
    missing = sorted(set(registered) - set(documented))
    stale = sorted(set(documented) - set(registered))
    assert not missing, f"routes create_app registers missing from docs/http.md: {missing}"
    assert not stale, f"docs/http.md documents routes create_app does not register: {stale}"
    for path, methods in registered.items():
        assert documented[path] == methods, f"docs/http.md: {path} answers {sorted(methods)}, documented {sorted(documented[path])}"


# -- error codes ---------------------------------------------------------------

_CODE_PATTERNS = [
    re.compile(r'\bcode\s*=\s*"([a-z_]+)"'),  # Error(..., code="x") and class attributes
    re.compile(r'"error":\s*"([a-z_]+)"'),  # answers built by hand
    re.compile(r'ProtocolError\(\s*"([a-z_]+)"'),  # control socket refusals
    re.compile(r'refuse\([^,()]+,\s*"([a-z_]+)"'),
]


def test_every_error_code_is_documented() -> None:
    codes: dict[str, str] = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern in _CODE_PATTERNS:
            for match in pattern.finditer(text):
                codes.setdefault(match.group(1), str(path.relative_to(ROOT)))
    assert len(codes) > 30, "the patterns no longer find the error codes: update them"
    pages = (DOCS / "http.md").read_text(encoding="utf-8") + (DOCS / "websocket.md").read_text(encoding="utf-8")
    missing = sorted(f"{code} ({where})" for code, where in codes.items() if f"`{code}`" not in pages)
    assert not missing, f"error codes missing from docs/http.md and docs/websocket.md: {missing}"


def test_every_setting_an_error_names_is_a_documented_key() -> None:
    from gateway.errors import SETTINGS

    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))

    keys = set(flatten(example))
    named = set(SETTINGS.values())
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        named |= set(re.findall(r'setting="([a-z_.]+)"', path.read_text(encoding="utf-8")))
    assert named and not named - keys, f"settings named by errors that are no config key: {named - keys}"
    page = (DOCS / "http.md").read_text(encoding="utf-8")
    section = page[page.index("* **`setting`**"):page.index("## Routes")]
    missing = sorted(k for k in named if f"`{k}`" not in section)
    assert not missing, f"settings missing from docs/http.md's `setting` paragraph: {missing}"


# -- README -------------------------------------------------------------------------


def _snippets() -> dict[str, str]:
    """The landing page's embed code (client/snippets.js), run by node."""
    import json
    import subprocess

    script = (
        'import { iframeSnippet, componentSnippet, widgetSnippet } from "./client/snippets.js";\n'
        'const u = "http://127.0.0.1:8000";\n'
        'console.log(JSON.stringify({iframe: iframeSnippet(u, "TRACK_ID", "Track title"),\n'
        '  component: componentSnippet(u, "TRACK_ID"), widget: widgetSnippet(u, "TRACK_ID", "Track title")}));\n'
    )
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    result: dict[str, str] = json.loads(out)
    return result


def test_readme_opens_with_the_title_a_paragraph_and_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert blocks[0] == "# Ztream"
    assert not blocks[1].startswith(("```", "#", "|", "*", "!"))  # one paragraph
    assert blocks[2].startswith("```sh\nmake run") and "\nmake test" in blocks[2]
    assert len(text.splitlines()) < 200, "internals and figures belong in docs/"


def test_readme_embed_snippets_are_the_landing_pages() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.findall(r"```html\n(.*?)\n```", text, re.S)
    snippets = _snippets()
    for name in ("iframe", "component", "widget"):
        assert snippets[name] in code, f"README's {name} snippet differs from client/snippets.js:\n{snippets[name]}"
    assert any("/player/?url=" in block for block in code)  # the SoundCloud drop-in


def test_deploy_page_covers_production_and_links_resolve() -> None:
    deploy = (DOCS / "deploy.md").read_text(encoding="utf-8")
    for topic in ("HTTPS", "public_url", "0.0.0.0", "stun_port", "deploy/nginx/ztream.conf", "coturn",
                  "redis_url", "docker compose", "deploy/systemd/ztream.service", "monitor"):
        assert topic in deploy, topic
    assert (ROOT / "deploy" / "systemd" / "ztream.service").read_text().count("ExecStart=") == 1
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Deployment" in readme and "docs/deploy.md" in readme
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
