"""A fault-injecting loopback proxy for an OpenAI-compatible server (127.0.0.1 only).

``FaultProxy(upstream, script)`` answers the first ``len(script)`` requests by the script and
forwards the rest: ``"pass"`` forwards; ``"429"`` / ``"500"`` / ``"503"`` answer with that status;
``"drop"`` closes the connection without an answer; ``"delay:S"`` waits S seconds, then forwards;
``"truncate"`` forwards but sends only half of the upstream body (declaring the full length);
``"garble"`` answers 200 with half a JSON body of matching length. It serves at most
``max_requests`` requests and never waits longer than ``max_delay_s`` for a delay.
"""

from __future__ import annotations

import http.server
import threading
import time

import httpx


class FaultProxy:
    def __init__(self, upstream: str, script: list[str], *, max_requests: int = 50, max_delay_s: float = 10.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.script = list(script)
        self.max_requests = max_requests
        self.max_delay_s = max_delay_s
        self.log: list[str] = []
        self.paths: list[str] = []  # the request path of each log entry
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._handle(None)

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", 0))
                self._handle(self.rfile.read(n))

            def _handle(self, body: bytes | None) -> None:
                with proxy._lock:
                    i = len(proxy.log)
                    action = proxy.script[i] if i < len(proxy.script) else "pass"
                    if i >= proxy.max_requests:
                        action = "503"
                    proxy.log.append(action)
                    proxy.paths.append(self.path)
                if action == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if action in ("429", "500", "503"):
                    data = b'{"error": {"message": "injected fault"}}'
                    self.send_response(int(action))
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    if action == "429":
                        self.send_header("retry-after", "0")
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if action.startswith("delay:"):
                    time.sleep(min(float(action.split(":")[1]), proxy.max_delay_s))
                headers = {"content-type": "application/json", "authorization": self.headers.get("authorization", "")}
                try:
                    r = httpx.request(self.command, proxy.upstream + self.path, content=body, headers=headers, timeout=300)
                except httpx.HTTPError:
                    self.close_connection = True
                    return
                data = r.content
                if action == "garble":
                    data = data[: len(data) // 2]
                self.send_response(r.status_code)
                self.send_header("content-type", r.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if action == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
