"""gateway/internals/aiohttp.py: the aiohttp names it relies on still exist, and the hooks still hook.

Each section mirrors one section of the module; an aiohttp upgrade that moves
a private name fails here first.
"""

from __future__ import annotations

import asyncio
import inspect
import json

from aiohttp import web

from gateway.internals.aiohttp import runner_answering_protocol_errors, sent_bytes

# -- answering aiohttp's own protocol errors ------------------------------------------


async def _ok(request: web.BaseRequest) -> web.StreamResponse:
    return web.Response(text="ok")


def test_runner_private_names_exist() -> None:
    assert inspect.iscoroutinefunction(web.AppRunner._make_server)
    assert callable(web.Server.__call__)
    assert "__slots__" in vars(web.RequestHandler)
    assert callable(web.RequestHandler.log_exception)
    params = list(inspect.signature(web.RequestHandler.handle_error).parameters)
    assert params == ["self", "request", "status", "exc", "message"]
    init = inspect.signature(web.RequestHandler.__init__).parameters
    assert list(init)[:2] == ["self", "manager"] and init["loop"].kind is inspect.Parameter.KEYWORD_ONLY
    server_init = inspect.signature(web.Server.__init__).parameters
    assert {"request_factory", "handler_cancellation"} <= set(server_init)


async def test_server_private_attributes_exist() -> None:
    server = web.Server(_ok, request_factory=None, handler_cancellation=True, max_line_size=1234)
    assert server._loop is asyncio.get_running_loop()
    assert server._kwargs == {"max_line_size": 1234}
    assert server.request_handler is _ok
    assert callable(server.request_factory)
    assert server.handler_cancellation is True
    handler = server()
    assert isinstance(handler, web.RequestHandler)
    assert not hasattr(handler, "__dict__")


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_runner_answers_protocol_errors_with_the_given_answer() -> None:
    seen: list[tuple[int, bool, int]] = []

    def answer(handler: web.RequestHandler, request: web.BaseRequest, status: int,
               exc: BaseException | None, message: str | None) -> web.StreamResponse:
        assert not hasattr(handler, "__dict__")  # the handler keeps aiohttp's slots
        seen.append((status, isinstance(handler, web.RequestHandler), sent_bytes(request)))
        response = web.Response(status=status, text=json.dumps({"status": status}), content_type="application/json")
        response.force_close()
        return response

    app = web.Application()
    app.router.add_get("/", _ok)
    runner = runner_answering_protocol_errors(answer)(app, access_log=None, handle_signals=False)
    assert isinstance(runner, web.AppRunner)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        good = await _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert good.startswith(b"HTTP/1.1 200") and good.endswith(b"ok")
        bad = await _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        assert bad.split(b" ", 2)[1] == b"400" and b"application/json" in bad
        assert bad.endswith(b'{"status": 400}')
        assert seen == [(400, True, 0)]
    finally:
        await runner.cleanup()
