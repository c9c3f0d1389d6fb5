"""gateway.http: the one origin policy and the one error path (renderer, wrapper, body reader)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from gateway.errors import BadRequest, Unauthorized, ZtreamError
from gateway.http import ORIGINS, OriginPolicy
from gateway.http.responses import endpoint, read_json, render_error

API_EXPOSE = "ETag, Content-Length, Content-Range, Accept-Ranges, X-Ztream-Complete, Retry-After"


def _request(path: str, origin: str | None = None) -> web.Request:
    headers = {"Origin": origin} if origin is not None else {}
    return make_mocked_request("GET", path, headers=headers)


# -- the origin policy, pure ------------------------------------------------------


def test_cors_for_api_answers_follows_embed_origins() -> None:
    policy = OriginPolicy(["https://blog.example"], "https://cdn.example")
    assert policy.cors_headers(_request("/v1/tracks")) == {"Vary": "Origin"}
    assert policy.cors_headers(_request("/v1/tracks", "https://evil.example")) == {"Vary": "Origin"}
    assert policy.cors_headers(_request("/v1/tracks/x/chunks/0", "https://blog.example")) == {
        "Vary": "Origin", "Access-Control-Allow-Origin": "https://blog.example",
        "Access-Control-Expose-Headers": API_EXPOSE,
    }
    # The catch-all 404 is an API answer too.
    assert "Access-Control-Allow-Origin" in policy.cors_headers(_request("/nope", "https://blog.example"))
    anyone = OriginPolicy(["*"], "https://cdn.example")
    assert anyone.cors_headers(_request("/v1/tracks", "https://evil.example"))["Access-Control-Allow-Origin"] == "*"


def test_client_modules_and_oembed_are_readable_by_any_page() -> None:
    policy = OriginPolicy(["https://blog.example"], "https://cdn.example")
    for path in ("/client/widget.js", "/client/ztream-player.js", "/oembed"):
        for origin in (None, "https://evil.example"):
            assert policy.cors_headers(_request(path, origin)) == {"Access-Control-Allow-Origin": "*"}
    # A fresh dict each time: callers add headers to it.
    policy.cors_headers(_request("/oembed"))["X"] = "y"
    assert policy.cors_headers(_request("/oembed")) == {"Access-Control-Allow-Origin": "*"}


def test_websocket_origins_match_the_control_socket_rules() -> None:
    # The cases of tests/unit/gateway/swarm/test_control_socket.py::test_origin_allowed, through the policy.
    policy = OriginPolicy(("https://blog.example",), "https://cdn.example")
    ok = lambda o, host="gw.example:8000": policy.websocket_allowed(o, host)  # noqa: E731
    assert ok("https://blog.example") and ok("HTTPS://Blog.Example/")
    assert ok("https://cdn.example") and ok("http://gw.example:8000")
    assert not ok("https://blog.example.evil") and not ok("null") and not ok("https://gw.example")
    assert not ok("https://x.example", host=None)
    assert OriginPolicy(("*",), "").websocket_allowed("null", None)
    # A configured origin with a slash or capitals still matches what browsers send.
    assert OriginPolicy(("https://Blog.Example/",), "https://cdn.example").websocket_allowed("https://blog.example", None)


def test_framing_follows_embed_origins() -> None:
    listed = OriginPolicy(["https://a.example", "https://b.example"], "https://cdn.example/")
    assert listed.frame_ancestors() == "frame-ancestors 'self' https://a.example https://b.example"
    assert listed.embedders() == ["https://a.example", "https://b.example"]
    assert listed.public_url == "https://cdn.example"
    anyone = OriginPolicy(["*"], "https://cdn.example")
    assert anyone.frame_ancestors() is None and anyone.embedders() == ["*"]


# -- the error path, over a real loopback server ----------------------------------------


class _Later(ZtreamError):
    status = 503
    code = "overloaded"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


async def _serve(**routes: Any) -> TestClient:
    app = web.Application()
    app[ORIGINS] = OriginPolicy(["https://blog.example"], "http://127.0.0.1")
    for path, handler in routes.items():
        app.router.add_route("*", "/" + path, endpoint(handler))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


async def test_endpoint_renders_errors_with_cors_retry_after_and_challenge() -> None:
    async def later(request: web.Request) -> web.Response:
        raise _Later("busy", retry_after=7)

    async def sign_in(request: web.Request) -> web.Response:
        raise Unauthorized("who are you")

    async def broken(request: web.Request) -> web.Response:
        raise KeyError("surprise")

    client = await _serve(later=later, sign_in=sign_in, broken=broken)
    try:
        r = await client.get("/later", headers={"Origin": "https://blog.example"})
        assert r.status == 503 and await r.json() == {"error": "overloaded", "detail": "busy"}
        assert r.headers["Retry-After"] == "7"
        assert r.headers["Access-Control-Allow-Origin"] == "https://blog.example"
        r = await client.get("/sign_in")
        assert r.status == 401 and (await r.json())["error"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer ")
        assert "Retry-After" not in r.headers
        r = await client.get("/broken")
        assert r.status == 500 and await r.json() == {"error": "internal", "detail": "internal server error"}
    finally:
        await client.close()


async def test_read_json_is_bounded_and_depth_safe() -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"got": await read_json(request, 1000)})

    client = await _serve(echo=echo)
    json_type = {"Content-Type": "application/json"}
    try:
        r = await client.post("/echo", data=b'{"a": [1, 2]}', headers=json_type)
        assert r.status == 200 and await r.json() == {"got": {"a": [1, 2]}}
        # Only a body declared JSON is read: a form or text/plain is what a cross-origin page posts unasked.
        for content_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"):
            r = await client.post("/echo", data=b'{"a": [1, 2]}', headers={"Content-Type": content_type})
            assert r.status == 415 and (await r.json())["error"] == "json_required", content_type
        r = await client.post("/echo", data=b'{"a": 1}', headers={"Content-Type": "application/merge-patch+json"})
        assert r.status == 200
        for body, code in [
            (b"[" * 999, "bad_json"),  # deeper than the decoder's stack: input, not a crash
            (b"\xff\xfe", "bad_json"),
            (b"", "bad_json"),
            (b" " * 1001, "body_too_large"),
        ]:
            r = await client.post("/echo", data=body, headers=json_type)
            assert r.status == 400 and (await r.json())["error"] == code, body[:10]

        # Without Content-Length the reader still stops one byte past the limit.
        async def chunks() -> Any:
            for _ in range(100):
                yield b"x" * 100

        r = await client.post("/echo", data=chunks(), headers=json_type)
        assert r.status == 400 and (await r.json())["error"] == "body_too_large"
    finally:
        await client.close()


def test_render_error_is_the_contract_shape() -> None:
    app = web.Application()
    app[ORIGINS] = OriginPolicy(["https://blog.example"], "https://cdn.example")
    request = make_mocked_request("GET", "/v1/tracks/x", headers={"Origin": "https://evil.example"}, app=app)
    response = render_error(request, BadRequest("no", code="bad_url"))
    assert response.status == 400 and response.headers["Vary"] == "Origin"
    assert response.body is not None and json.loads(bytes(response.body)) == {"error": "bad_url", "detail": "no"}


# -- through the gateway ------------------------------------------------------------------


async def test_deeply_nested_post_body_is_a_json_error(make_gateway: Any) -> None:
    client = await make_gateway()
    r = await client.post("/v1/tracks", data=b"[" * 16000, headers={"Content-Type": "application/json"})
    assert r.status == 400 and (await r.json())["error"] == "bad_json"


async def test_page_errors_keep_their_cors(make_gateway: Any) -> None:
    client = await make_gateway(server={"embed_origins": ["http://allowed.test"]})
    for path, status, code in [
        ("/oembed?url=x&format=xml", 501, "format_not_implemented"),
        ("/oembed?url=http://elsewhere.test/embed/x", 404, "not_found"),
        ("/client/nope.js", 404, "not_found"),
    ]:
        r = await client.get(path, headers={"Origin": "http://evil.test"})
        assert r.status == status and (await r.json())["error"] == code, path
        assert r.headers["Access-Control-Allow-Origin"] == "*", path
    r = await client.options("/v1/tracks", headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"})
    assert r.status == 403 and (await r.json())["error"] == "origin_forbidden"
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_embed_passes_the_upload_policy_to_the_player(make_gateway: Any) -> None:
    """/embed/{id}?upload=on|opt-in|off becomes the player's data-upload; anything else is a clear 400."""
    import re

    client = await make_gateway()
    tracks = (await (await client.get("/v1/tracks")).json())["tracks"]
    tid = tracks[0]["id"]
    for value in ("on", "opt-in", "off", ""):
        r = await client.get(f"/embed/{tid}?upload={value}")
        assert r.status == 200
        player = re.search(r"<ztream-player [^>]*>", await r.text())
        assert player and f'data-upload="{value}"' in player.group(0), player
    r = await client.get(f"/embed/{tid}")
    assert 'data-upload=""' in await r.text()
    for bad in ("yes", "OFF", "opt-in%22%20onclick%3D%22x"):
        r = await client.get(f"/embed/{tid}?upload={bad}")
        assert r.status == 400 and (await r.json())["error"] == "bad_request", bad
