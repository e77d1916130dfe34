"""The host's connections: HTTP/1.1 keep-alive as the Functions host (Kestrel) keeps it, and
request bodies delimited so that a body a function did not read never becomes the next
request on the connection."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from tests.host.conftest import AppHost


@pytest.fixture
def connection(app_host: AppHost) -> Iterator[http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", app_host.host.port, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def _exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


def _local_port(conn: http.client.HTTPConnection) -> int:
    assert conn.sock is not None, "the host closed the connection"
    port: int = conn.sock.getsockname()[1]
    return port


def test_requests_share_one_connection(connection: http.client.HTTPConnection) -> None:
    first, _ = _exchange(connection, "GET", "/api/plain")
    port = _local_port(connection)
    second, body = _exchange(connection, "GET", "/api/items/7")
    assert (first.status, second.status) == (200, 200)
    assert json.loads(body)["route_params"] == {"id": "7"}
    assert first.getheader("Connection") is None
    assert second.version == 11
    assert _local_port(connection) == port  # the same TCP connection, not a new one


def test_a_body_nobody_read_does_not_become_the_next_request(
    connection: http.client.HTTPConnection,
) -> None:
    # 404 (no route) and 404 (undeclared method) answer without reading the body; a 200 then
    # must come from the request that follows on the same connection, not from body bytes.
    smuggled = b"GET /api/plain HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
    for method, path in (("POST", "/api/nothing/here"), ("DELETE", "/api/getonly")):
        response, _ = _exchange(connection, method, path, body=smuggled)
        assert response.status == 404
        port = _local_port(connection)
        response, body = _exchange(connection, "GET", "/api/items/special")
        assert response.status == 200
        assert json.loads(body)["function"] == "items_special"
        assert _local_port(connection) == port


def test_a_body_read_by_the_function_then_the_next_request(
    connection: http.client.HTTPConnection,
) -> None:
    payload = bytes(range(256)) * 100
    response, body = _exchange(connection, "POST", "/api/raw", body=payload)
    assert (response.status, body) == (200, payload)
    response, body = _exchange(connection, "POST", "/api/echo", body=b"second")
    assert bytes.fromhex(json.loads(body)["body_hex"]) == b"second"


def test_a_chunked_body_reaches_the_function_and_then_the_connection_closes(
    app_host: AppHost,
) -> None:
    with socket.create_connection(("127.0.0.1", app_host.host.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        answer = _read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nConnection: close" in head  # its end is Werkzeug's to know, not ours
    assert bytes.fromhex(json.loads(body)["body_hex"]) == b"hello world"


def test_expect_100_continue_then_the_body(app_host: AppHost) -> None:
    # As curl sends a larger body: the headers, then the body once the host says to go on.
    with socket.create_connection(("127.0.0.1", app_host.host.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(1)
            assert chunk, "the host closed the connection"
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"ping")
        answer = _read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert bytes.fromhex(json.loads(body)["body_hex"]) == b"ping"


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /api/plain HTTP/1.0\r\nHost: x\r\n\r\n", b"200"),  # 1.0 closes unless asked
        (b"GET /api/plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"200"),
        # RFC 9112 6.3: an invalid length is a framing error, 400 and the connection closed.
        (
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Content-Length: 3\r\n\r\nab",
            b"400",
        ),
        (b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", b"400"),
    ],
    ids=["http-1.0", "connection-close", "two-lengths", "bad-length"],
)
def test_the_connection_closes_when_asked_or_when_the_body_s_end_is_unknown(
    app_host: AppHost, request_head: bytes, status: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", app_host.host.port), timeout=30) as sock:
        sock.sendall(request_head)
        answer = _read_until_closed(sock)  # times out (fails) if the host kept it open
    assert answer.split(b" ", 2)[1] == status


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
