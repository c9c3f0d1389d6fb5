"""Issue 12, HTTP edges, through the public contract of a real ``ztream serve``.

Tests marked ``xfail(strict=True)`` fail on the code they were written
against; each reason names the finding. When a fix lands the test passes,
strict xfail turns that into a failure, and the mark is removed.
``raises=AssertionError`` keeps a broken test from passing as an expected
failure: only a failed assertion counts.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.gateway import GatewayProcess


def issue12(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"issue 12: {reason}")


Answer = tuple[int, dict[str, str], bytes]


def call(gw: GatewayProcess, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def raw_call(gw: GatewayProcess, request: bytes) -> Answer:
    """Bytes on the wire as given (for requests http.client would not send)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.sendall(request)
        r = http.client.HTTPResponse(conn.sock, method="GET")
        r.begin()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def json_error(answer: Answer) -> dict[str, Any]:
    status, headers, body = answer
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body[:200])
    data = json.loads(body)
    assert isinstance(data, dict) and isinstance(data.get("error"), str) and isinstance(data.get("detail"), str)
    return data


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, audio_dir: Any) -> Any:
    """One gateway with a complete track: (gateway, track id, manifest)."""
    gw = GatewayProcess(tmp_path_factory.mktemp("rel-http"), audio_dir, {})
    gw.start()
    try:
        tid = gw.library_ids[0]
        deadline = time.monotonic() + 60
        while True:
            status, _, body = call(gw, "GET", f"/v1/tracks/{tid}/manifest")
            assert status == 200, body
            manifest = json.loads(body)
            if manifest["complete"]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield gw, tid, manifest
    finally:
        gw.stop()


# -- chunk indices -------------------------------------------------------------


@pytest.mark.parametrize("raw", ["+3", "-1", "%203", "3.0", "1234567890"])
def test_chunk_index_plain_refusals(served: Any, raw: str) -> None:
    gw, tid, _ = served
    answer = call(gw, "GET", f"/v1/tracks/{tid}/chunks/{raw}")
    assert answer[0] == 400 and json_error(answer)["error"] == "bad_chunk_index"


@pytest.mark.parametrize(
    "raw",
    [
        "\u00b2",
        "\u0663",
        "\uff13",
        "0\u0663",
    ],
)
def test_chunk_index_non_ascii_digits_are_bad_chunk_index(served: Any, raw: str) -> None:
    gw, tid, _ = served
    answer = call(gw, "GET", f"/v1/tracks/{tid}/chunks/{quote(raw)}")
    assert answer[0] == 400, answer[:2]
    assert json_error(answer)["error"] == "bad_chunk_index"


def test_chunk_index_ascii_still_served(served: Any) -> None:
    gw, tid, manifest = served
    status, _, body = call(gw, "GET", f"/v1/tracks/{tid}/chunks/3")
    assert status == 200 and hashlib.sha256(body).hexdigest() == manifest["chunks"][3]["sha256"]


# -- JSON bodies and aiohttp's own errors ----------------------------------------


def test_deeply_nested_json_is_400(served: Any) -> None:
    gw, _, _ = served
    body = b"[" * 8000 + b"]" * 8000
    assert len(body) < 16 * 1024
    answer = call(gw, "POST", "/v1/tracks", {"Content-Type": "application/json"}, body)
    assert answer[0] == 400, answer[:2]
    assert json_error(answer)["error"] in {"bad_json", "bad_request"}


def test_hundred_thousand_deep_json_is_400(served: Any) -> None:
    gw, _, _ = served
    started = time.monotonic()
    answer = call(gw, "POST", "/v1/tracks", {"Content-Type": "application/json"}, b"[" * 100_000)
    assert answer[0] == 400 and json_error(answer)["error"] == "body_too_large"
    assert time.monotonic() - started < 2


def test_long_path_is_a_json_error(served: Any) -> None:
    gw, tid, _ = served
    answer = call(gw, "GET", f"/v1/tracks/{tid}/" + "a" * 9000)
    assert 400 <= answer[0] < 500
    json_error(answer)


def test_bad_request_is_a_json_error(served: Any) -> None:
    gw, _, _ = served
    answer = raw_call(gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    assert answer[0] == 400
    json_error(answer)


# -- Range ---------------------------------------------------------------------


def _resources(tid: str, manifest: dict[str, Any]) -> dict[str, tuple[str, int]]:
    stream_size = manifest["init"]["size"] + sum(c["size"] for c in manifest["chunks"])
    return {
        "chunk": (f"/v1/tracks/{tid}/chunks/1", manifest["chunks"][1]["size"]),
        "init": (f"/v1/tracks/{tid}/init", manifest["init"]["size"]),
        "stream": (f"/v1/tracks/{tid}/stream", stream_size),
    }


KINDS = ["chunk", "init", "stream"]


@pytest.mark.parametrize("kind", KINDS)
def test_accept_ranges_advertised(served: Any, kind: str) -> None:
    gw, tid, manifest = served
    path, _ = _resources(tid, manifest)[kind]
    status, headers, _ = call(gw, "GET", path)
    assert status == 200 and headers.get("accept-ranges") == "bytes", headers


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("spec", ["0-99", "-10", "5-", "50-60,55-70"])
def test_range_gives_206(served: Any, kind: str, spec: str) -> None:
    gw, tid, manifest = served
    path, size = _resources(tid, manifest)[kind]
    _, _, whole = call(gw, "GET", path)
    assert len(whole) == size
    status, headers, body = call(gw, "GET", path, {"Range": f"bytes={spec}"})
    start, end = {"0-99": (0, 99), "-10": (size - 10, size - 1), "5-": (5, size - 1),
                  "50-60,55-70": (50, 70)}[spec]
    assert status == 206, (status, headers)
    assert headers.get("content-range") == f"bytes {start}-{end}/{size}"
    assert body == whole[start : end + 1]
    assert int(headers["content-length"]) == end - start + 1


@pytest.mark.parametrize("kind", KINDS)
def test_ranged_answer_is_readable_cross_origin(served: Any, kind: str) -> None:
    """A player on another origin (fetch with Range) can read what a 206 says about itself."""
    gw, tid, manifest = served
    path, size = _resources(tid, manifest)[kind]
    status, headers, _ = call(gw, "GET", path, {"Range": "bytes=0-9", "Origin": "https://blog.example"})
    assert status == 206 and headers.get("access-control-allow-origin"), headers
    exposed = {h.strip().lower() for h in headers["access-control-expose-headers"].split(",")}
    assert {"content-range", "accept-ranges", "content-length", "etag"} <= exposed, headers


@pytest.mark.parametrize("kind", KINDS)
def test_unsatisfiable_range_is_416(served: Any, kind: str) -> None:
    gw, tid, manifest = served
    path, size = _resources(tid, manifest)[kind]
    status, headers, _ = call(gw, "GET", path, {"Range": f"bytes={size}-"})
    assert status == 416, (status, headers)
    assert headers.get("content-range") == f"bytes */{size}"


@pytest.mark.parametrize("kind", KINDS)
def test_unparsable_range_is_ignored(served: Any, kind: str) -> None:
    gw, tid, manifest = served
    path, size = _resources(tid, manifest)[kind]
    status, _, body = call(gw, "GET", path, {"Range": "bytes=9-1"})
    assert status == 200 and len(body) == size


# -- If-None-Match ---------------------------------------------------------------


def _etag(gw: GatewayProcess, path: str) -> str:
    status, headers, _ = call(gw, "GET", path)
    assert status == 200
    return headers["etag"]


@pytest.mark.parametrize("path_kind", ["chunk", "init"])
def test_if_none_match_exact_is_304(served: Any, path_kind: str) -> None:
    gw, tid, manifest = served
    path, _ = _resources(tid, manifest)[path_kind]
    etag = _etag(gw, path)
    status, headers, body = call(gw, "GET", path, {"If-None-Match": etag})
    assert status == 304 and body == b"" and headers["etag"] == etag


@pytest.mark.parametrize("path_kind", ["chunk", "init"])
@pytest.mark.parametrize(
    "form",
    [
        pytest.param("W/{etag}", id="weak"),
        pytest.param('"nope", {etag}', id="list"),
        pytest.param('W/"x" ,{etag} , "y"', id="list-ows"),
        pytest.param("*", id="star"),
    ],
)
def test_if_none_match_rfc9110_is_304(served: Any, path_kind: str, form: str) -> None:
    gw, tid, manifest = served
    path, _ = _resources(tid, manifest)[path_kind]
    etag = _etag(gw, path)
    status, _, body = call(gw, "GET", path, {"If-None-Match": form.format(etag=etag)})
    assert status == 304 and body == b"", status


@pytest.mark.parametrize("header", ['"nope"', 'W/"nope"', "garbage", ""])
def test_if_none_match_other_is_200(served: Any, header: str) -> None:
    gw, tid, manifest = served
    path, size = _resources(tid, manifest)["chunk"]
    status, _, body = call(gw, "GET", path, {"If-None-Match": header})
    assert status == 200 and len(body) == size
