"""gateway/internals/aiohttp.py: the aiohttp names it relies on still exist, and the hooks still hook.

Each section mirrors one section of the module; an aiohttp upgrade that moves
a private name fails here first.
"""

from __future__ import annotations

from collections import deque

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.internals.aiohttp import NO_REQUESTS, shed_http_state

# -- an upgraded connection lets go of its HTTP state -----------------------------------

SHED_NAMES = ("_upgraded", "_payload_parser", "_parser", "_messages")


def test_request_handler_slots_exist() -> None:
    slots = {name for cls in web.RequestHandler.__mro__ for name in getattr(cls, "__slots__", ())}
    assert set(SHED_NAMES) <= slots


async def test_an_upgraded_connection_is_in_the_state_shed_http_state_expects() -> None:
    seen: dict[str, object] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        protocol = request.protocol
        assert isinstance(protocol, web.RequestHandler)
        seen.update({name: getattr(protocol, name) for name in SHED_NAMES})
        shed_http_state(protocol)
        seen["parser after"] = protocol._parser
        seen["messages after"] = protocol._messages
        await ws.send_str("shed")
        async for msg in ws:  # the socket still works without its HTTP state
            await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    async with TestClient(TestServer(app)) as client:
        ws = await client.ws_connect("/ws")
        assert (await ws.receive_str()) == "shed"
        await ws.send_str("echo")
        assert (await ws.receive_str()) == "echo"
        await ws.close()
    assert seen["_upgraded"] is True
    assert seen["_payload_parser"] is not None and seen["_parser"] is not None
    assert isinstance(seen["_messages"], deque) and not seen["_messages"]
    assert seen["parser after"] is None
    assert seen["messages after"] is NO_REQUESTS and NO_REQUESTS.maxlen == 0


def test_shed_http_state_leaves_a_handler_that_is_not_upgraded_alone() -> None:
    class NotUpgraded:
        _upgraded = False
        _payload_parser = object()
        _parser = object()
        _messages: deque[object] = deque()

    handler = NotUpgraded()
    parser = handler._parser
    shed_http_state(handler)  # type: ignore[arg-type]
    assert handler._parser is parser
