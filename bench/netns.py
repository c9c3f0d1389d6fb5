"""A loopback-only network namespace for WebRTC tests: gateway and Chromium inside.

Chromium gathers no usable ICE candidates on the root namespace's loopback;
in a namespace that has nothing but ``lo`` it offers 127.0.0.1 host
candidates (with ``--allow-loopback-in-peer-connection`` and the
``microphone``/``camera`` permissions, which lift mDNS host-name hiding).
See docs/p2p.md for the measured browser facts this relies on.

How the pieces meet:

- ``NetNamespace()`` makes ``ztest-<random>`` (``ip netns add``), brings
  ``lo`` up, and deletes it again in ``close()`` (a fixture finalizer).
- The gateway runs inside: ``ip netns exec NS python -m gateway.cli serve``
  (``NamespacedGateway``). Its 127.0.0.1 is the namespace's own.
- Chromium runs inside too, but Playwright stays in the test process:
  ``chromium_wrapper()`` writes a tiny script that ``exec``s ``ip netns exec
  NS /usr/bin/chromium "$@"``, given to ``launch(executable_path=...)``.
  Playwright talks to Chromium over ``--remote-debugging-pipe`` (file
  descriptors 3 and 4), and pipes cross network namespaces untouched.
- The test process itself reaches into the namespace (readiness, /metrics)
  with ``ns.http_get(url)``: a short-lived thread calls setns(2) on the
  namespace (it is per thread for network namespaces), opens the connection
  there, and ends.

Requires root (CAP_SYS_ADMIN) and iproute2; ``require_netns()`` fails otherwise.
Every byte stays on a loopback inside a namespace the test made itself.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.browser import require_chromium
from bench.harness import GatewayProcess, MissingTool

__all__ = ["NetNamespace", "NamespacedGateway", "require_netns", "WEBRTC_ARGS"]

CLONE_NEWNET = 0x40000000
IP = shutil.which("ip") or "/usr/sbin/ip"

# Added to bench.browser.CHROMIUM_ARGS for WebRTC between pages on loopback.
WEBRTC_ARGS = [
    "--allow-loopback-in-peer-connection",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.local, EXCLUDE 127.0.0.1",
]

T = TypeVar("T")


def require_netns() -> None:
    """Fail (never skip) unless this process may create network namespaces."""
    if os.geteuid() != 0 or not os.path.exists(IP):
        raise MissingTool("network namespaces need root and iproute2 (`make test` installs iproute2)")
    require_chromium()


class NetNamespace:
    """A named network namespace with only ``lo``, up."""

    def __init__(self, prefix: str = "ztest") -> None:
        self.name = f"{prefix}-{secrets.token_hex(4)}"
        subprocess.run([IP, "netns", "add", self.name], check=True, capture_output=True, timeout=10)
        try:
            subprocess.run([IP, "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)
        except BaseException:
            self.close()
            raise
        self._wrapper: Path | None = None

    @property
    def exec_prefix(self) -> list[str]:
        return [IP, "netns", "exec", self.name]

    def chromium_wrapper(self, directory: Path, chromium: str) -> str:
        """An executable that starts ``chromium`` inside this namespace, for Playwright."""
        path = directory / f"chromium-{self.name}.sh"
        path.write_text(f'#!/bin/sh\nexec {IP} netns exec {self.name} {chromium} "$@"\n')
        path.chmod(0o755)
        self._wrapper = path
        return str(path)

    def run_inside(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on a fresh thread that has entered this namespace."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns: {os.strerror(err)}")
                finally:
                    os.close(fd)
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"in-{self.name}", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    def http_get(self, url: str, timeout: float = 5.0) -> bytes:
        """GET ``url`` from inside the namespace (no proxies)."""

        def get() -> bytes:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url, timeout=timeout) as r:
                return r.read()  # type: ignore[no-any-return]

        return self.run_inside(get)

    def close(self) -> None:
        subprocess.run([IP, "netns", "delete", self.name], capture_output=True, timeout=10)
        if self._wrapper is not None:
            self._wrapper.unlink(missing_ok=True)


class NamespacedGateway(GatewayProcess):
    """A real ``ztream serve`` subprocess inside a namespace, on its 127.0.0.1.

    ``ip netns exec`` execs the command, so the pid is the gateway's own and
    ``stop()`` works unchanged.
    """

    def __init__(self, ns: NetNamespace, tmp_path: Path, library: Path | None, port: int = 8000,
                 **overrides: dict[str, Any]) -> None:
        self.ns = ns
        self.command_prefix = list(ns.exec_prefix)
        super().__init__(tmp_path, library, {k.replace("__", "."): v for k, v in overrides.items()}, port=port)

    def healthy(self) -> bool:
        self.ns.http_get(f"{self.url}/healthz", timeout=1)
        return True

    def get(self, path: str) -> bytes:
        return self.ns.http_get(self.url + path)

    def post_json(self, path: str, body: Any, timeout: float = 20.0) -> Any:
        """POST ``body`` as JSON from inside the namespace; the answer's JSON."""
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})

        def post() -> Any:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(request, timeout=timeout) as r:
                return json.loads(r.read())

        return self.ns.run_inside(post)

    def metrics(self) -> dict[str, float]:
        """/metrics as {"name{labels}": value} (samples only)."""
        out: dict[str, float] = {}
        for line in self.get("/metrics").decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
        return out
