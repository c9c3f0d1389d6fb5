"""Real Redis (one server, or a 3-master Redis Cluster) and gateway nodes on loopback, for the cluster tests and bench."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from .conftest import GatewayProcess, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


class RedisServer:
    """One ``redis-server`` on a loopback port, nothing saved to disk."""

    def __init__(self, directory: Path, port: int | None = None, *, cluster: bool = False) -> None:
        self.port = port if port is not None else free_port()
        self.dir = directory / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--protected-mode", "no", "--loglevel", "warning"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
                     "--cluster-node-timeout", "2000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None


class RedisSetup:
    """Either one server or three cluster masters; ``url`` is what nodes are given."""

    def __init__(self, directory: Path, *, cluster: bool) -> None:
        self.servers = [RedisServer(directory, cluster=cluster) for _ in range(3 if cluster else 1)]
        self.cluster = cluster

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> None:
        for s in self.servers:
            s.start()
        if self.cluster:
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=30,
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                states = [redis.Redis(port=s.port).cluster("info").get("cluster_state") for s in self.servers]
                if all(state == "ok" for state in states):
                    return
                time.sleep(0.1)
            raise RuntimeError("the redis cluster did not become ok")

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


def start_node(tmp_path: Path, name: str, library: Path | None, redis_url: str, **overrides: dict[str, Any]) -> GatewayProcess:
    sub = tmp_path / name
    sub.mkdir()
    sections: dict[str, dict[str, Any]] = {"cluster": {"redis_url": redis_url, "node_id": name}}
    for key, values in overrides.items():
        sections.setdefault(key.replace("__", "."), {}).update(values)
    gw = GatewayProcess(sub, library, sections)
    gw.start()
    return gw


def wait_nodes(redis_url: str, count: int, *, cluster: bool, timeout: float = 10) -> None:
    """Until ``count`` nodes have beaten (so that every node knows the others)."""
    client: Any = redis.RedisCluster.from_url(redis_url) if cluster else redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(client.hgetall("ztream:nodes")) >= count:
            time.sleep(1.2)  # one more heartbeat: each node has read the others
            return
        time.sleep(0.1)
    raise RuntimeError("the nodes did not all register")


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHIPPED_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "ztream.conf"


class NginxEdge:
    """The shipped deploy/nginx/ztream.conf, its EDIT lines pointed at loopback nodes and a scratch cache."""

    def __init__(self, directory: Path, node_ports: list[int], port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = directory / f"nginx-{self.port}"
        self.dir.mkdir(parents=True)
        shipped = SHIPPED_CONF.read_text()
        servers = "".join(f"    server 127.0.0.1:{p};\n" for p in node_ports)
        lines = []
        for line in shipped.splitlines(keepends=True):
            if "EDIT: one line per node" in line:
                lines.append(servers)
            elif line.strip().startswith("listen ") and "EDIT" in line:
                lines.append(f"    listen 127.0.0.1:{self.port};\n")
            else:
                lines.append(line.replace("/var/cache/nginx/ztream", str(self.dir / "cache")))
        (self.dir / "ztream.conf").write_text("".join(lines))
        user = "user root root;\n" if os.geteuid() == 0 else ""
        d = self.dir
        (d / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n"
            f" fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n"
            f" include {d}/ztream.conf;\n}}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        check = subprocess.run([NGINX, "-t", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                               capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr.decode()
        self.proc = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
