"""A minimal HTTP/1.1 keep-alive client on asyncio protocols, for load generation only.

httpx costs a few milliseconds of client CPU per request here; on a 2-core machine that CPU is taken
from the server being measured. This client sends prebuilt request bytes and parses only the status
line, Content-Length and the body (uvicorn always answers with a Content-Length), at a small fraction
of that cost. Not a general HTTP client: no chunked bodies, no redirects, no TLS.
"""

from __future__ import annotations

import asyncio


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._try_complete()

    def _try_complete(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buf[:head_end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        total = head_end + 4 + length
        if len(self.buf) < total:
            return
        status = int(head[9:12])
        body = bytes(self.buf[head_end + 4:total])
        del self.buf[:total]
        self.waiter.set_result((status, body))

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self.waiter


class RawClient:
    """`size` keep-alive connections; `post` borrows a free one (so callers may exceed `size`)."""

    def __init__(self, host: str, port: int, headers: dict[str, str], size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
        self._free: asyncio.Queue[_Conn] = asyncio.Queue()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.size):
            _, conn = await loop.create_connection(_Conn, self.host, self.port)
            self._free.put_nowait(conn)

    def build(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
        extra = f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n" if method != "GET" else ""
        return f"{method} {path} HTTP/1.1\r\n{self.headers}{extra}\r\n".encode() + body

    async def send(self, payload: bytes) -> tuple[int, bytes]:
        conn = await self._free.get()
        try:
            result = await conn.request(payload)
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_Conn, self.host, self.port)  # replace the broken one
            raise
        finally:
            self._free.put_nowait(conn)
        return result

    async def close(self) -> None:
        while not self._free.empty():
            conn = self._free.get_nowait()
            if conn.transport is not None:
                conn.transport.close()
