"""A small ASGI application served by :func:`qrc.transit.server.serve` in a subprocess.

Usage: python asgi_server.py DATA_DIR [--plain] [--mode pq-only|hybrid-preferred]
[--fastapi] [--max-body N] [--drain-timeout S] [--port P] [--header-timeout S]
[--max-conn-per-source N]. Prints ``READY <host> <port>`` once the
port accepts connections and ``LIFESPAN shutdown`` when the application is shut down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from qrc.transit.ca import default_server_names, ensure_server_tls
from qrc.transit.server import ServerOptions, serve

HANDSHAKES: Counter[str] = Counter()
FAILURES: Counter[str] = Counter()


async def _body(receive: Any) -> bytes:
    data = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return data
        data += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return data


async def _answer(send: Any, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("LIFESPAN shutdown", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    body = await _body(receive)
    if path == "/hello":
        await _answer(send, 200, {"hello": "world", "scheme": scope["scheme"]})
    elif path == "/echo" and method == "POST":
        await _answer(send, 200, {"echo": json.loads(body or b"null"), "size": len(body)})
    elif path == "/kib":
        data = b"x" * 1024
        headers = [(b"content-type", b"application/octet-stream")]
        headers.append((b"content-length", b"1024"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})
    elif path == "/chunked":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":
        seconds = float(scope["query_string"].decode().partition("=")[2] or "1")
        await asyncio.sleep(seconds)
        await _answer(send, 200, {"slept": seconds})
    elif path == "/tls":
        await _answer(send, 200, scope.get("extensions", {}).get("qrc.tls"))
    elif path == "/stats":
        await _answer(
            send,
            200,
            {
                "handshakes": dict(HANDSHAKES),
                "failures": dict(FAILURES),
                "lifespan": scope.get("state", {}).get("started", False),
            },
        )
    else:
        await _answer(send, 404, {"title": "Not Found"})


def fastapi_app() -> Any:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        yield {"greeting": "from lifespan"}
        print("LIFESPAN shutdown", flush=True)

    api = FastAPI(lifespan=lifespan)

    @api.get("/hello")
    def hello(request: Request) -> dict[str, str]:
        return {"hello": "fastapi", "greeting": request.state.greeting}

    @api.post("/echo")
    def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return {"echo": payload}

    return api


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--mode", default="pq-only")
    parser.add_argument("--fastapi", action="store_true")
    parser.add_argument("--max-body", type=int, default=1024 * 1024)
    parser.add_argument("--drain-timeout", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--header-timeout", type=float, default=15.0)
    parser.add_argument("--max-conn-per-source", type=int, default=256)
    args = parser.parse_args()
    tls = (
        None if args.plain else ensure_server_tls(args.data_dir, default_server_names("127.0.0.1"))
    )

    def ready(addresses: list[tuple[str, int]]) -> None:
        host, port = addresses[0]
        print(f"READY {host} {port}", flush=True)

    serve(
        fastapi_app() if args.fastapi else app,
        "127.0.0.1",
        args.port,
        tls,
        mode=args.mode,
        on_handshake=lambda group, _cipher: HANDSHAKES.update([group]),
        on_handshake_failure=lambda alert: FAILURES.update([alert]),
        on_ready=ready,
        options=ServerOptions(
            drain_timeout=args.drain_timeout,
            max_body_bytes=args.max_body,
            header_timeout=args.header_timeout,
            max_connections_per_source=args.max_conn_per_source,
        ),
    )
    print("EXITED", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
