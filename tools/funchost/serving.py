"""The host's HTTP connections: Werkzeug's request handler with HTTP/1.1 keep-alive.

Werkzeug's development server answers every request with ``Connection: close`` and then
waits 10 ms for stray body bytes, because it cannot tell where a request body it did not
read ends. The Functions host (Kestrel) keeps connections open, so a client's second request
costs no new connection and no new thread there; this handler does the same. It can,
because it knows where the body ends: it gives the application the body limited to its
``Content-Length`` and discards whatever the application left unread before it reads the
next request. A chunked body ends the connection after the answer, as before (Werkzeug
decodes it); an invalid ``Content-Length`` is answered 400 and the connection closed.

The request line, the headers and the environ are still parsed by ``http.server`` and
Werkzeug; only the framing of the answer is here: status, headers, ``Content-Length`` and
body, written in one piece (``TCP_NODELAY``, so no Nagle delay on it).
"""

from __future__ import annotations

import logging
from typing import Any

from werkzeug.serving import WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

log = logging.getLogger("funchost")

# Kestrel's KeepAliveTimeout default, which the Functions host keeps: an idle connection is
# closed after 130 s (KestrelServerLimits.KeepAliveTimeout,
# https://learn.microsoft.com/en-us/dotnet/api/microsoft.aspnetcore.server.kestrel.core.kestrelserverlimits.keepalivetimeout).
KEEP_ALIVE_TIMEOUT = 130.0

_DISCARD_CHUNK = 64 * 1024


class RequestHandler(WSGIRequestHandler):
    """One connection: requests answered in turn on it until the client or a rule closes it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY: the answer leaves at once
    wbufsize = -1  # buffered: the headers and the body go out in one write per answer
    timeout = KEEP_ALIVE_TIMEOUT

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """None: FunctionHost logs each request itself, without the query string (a ``code``
        key may be there) and without colour codes."""

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):
            return  # an idle keep-alive connection reaching its timeout: nothing went wrong
        super().log_error(format, *args)

    def handle_expect_100(self) -> bool:
        """http.server's interim answer to ``Expect: 100-continue``, sent now: the client
        waits for it before it sends the body, and the writes here are buffered."""
        go_on: bool = super().handle_expect_100()
        self.wfile.flush()
        return go_on

    def run_wsgi(self) -> None:
        environ = self.environ = self.make_environ()
        body: LimitedStream | None = None
        if environ.get("wsgi.input_terminated"):
            # Chunked: Werkzeug decodes it, but where it ends is only known once it is read.
            self.close_connection = True
        else:
            body = self._delimited_body()
            if body is None:
                # RFC 9112 6.3: an invalid Content-Length is an unrecoverable framing error,
                # answered 400 and the connection closed (Kestrel does the same).
                self.close_connection = True
                self._send("400 BAD REQUEST", [], b"")
                return
            environ["wsgi.input"] = body
        answer: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            answer[:] = [status, headers]
            return chunks.append

        try:
            result = self.server.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if body is not None:
                while body.read(_DISCARD_CHUNK):  # the rest the application did not read
                    pass
        except (ConnectionError, TimeoutError):  # the client went away mid-request
            self.close_connection = True
            return
        except Exception:
            if not answer:
                log.exception("request failed before an answer")
                answer[:] = ["500 INTERNAL SERVER ERROR", []]
                chunks.clear()
            # The body's end is unknown now (ClientDisconnected, say): no next request on it.
            self.close_connection = True
        self._send(str(answer[0]), list(answer[1]), b"".join(chunks))

    def _delimited_body(self) -> LimitedStream | None:
        """The request body limited to its ``Content-Length`` (none: no body, RFC 9112 6.3),
        or None when the length is invalid (not digits, or given twice)."""
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return LimitedStream(self.rfile, 0)
        text = lengths[0].strip()
        if len(lengths) > 1 or not (text.isascii() and text.isdigit()):
            return None
        return LimitedStream(self.rfile, int(text))

    def _send(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        code_text, _, message = status.partition(" ")
        code = int(code_text)
        self.send_response(code, message)
        names = set()
        for name, value in headers:
            self.send_header(name, value)
            names.add(name.lower())
        bodiless = self.command == "HEAD" or 100 <= code < 200 or code in (204, 304)
        if "content-length" not in names and not bodiless:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection and "connection" not in names:
            self.send_header("Connection", "close")  # the client knows not to send another
        self.end_headers()
        if body:
            self.wfile.write(body)
        # http.server's handle_one_request flushes wfile after each request: one write.
