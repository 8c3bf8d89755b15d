"""A fake PostgreSQL server: it answers every StartupMessage by asking for the password (in clear
text, or MD5-hashed) and records every PasswordMessage a client sends it, then refuses the login."""
import asyncio
import struct
import threading
from typing import Self

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104
CLEARTEXT, MD5 = 3, 5  # AuthenticationCleartextPassword, AuthenticationMD5Password


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


class PasswordAskingServer:
    """On 127.0.0.1:`port` while in a `with` block; `passwords` holds what clients sent, in order."""

    def __init__(self, method: int = CLEARTEXT):
        self.method = method
        self.passwords: list[str] = []
        self.connections = 0
        self.port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-postgres", daemon=True)

    def url(self, dbname: str = "shop", user: str = "app", password: str | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{dbname}"

    def __enter__(self) -> Self:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._answer, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _close(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:  # SSL and GSS encryption requests are declined, then comes the StartupMessage
                length, code = struct.unpack("!ii", await reader.readexactly(8))
                await reader.readexactly(length - 8)
                if code not in (SSL_REQUEST, GSSENC_REQUEST):
                    break
                writer.write(b"N")
            salt = b"salt" if self.method == MD5 else b""
            writer.write(message(b"R", struct.pack("!i", self.method) + salt))
            await writer.drain()
            kind = await reader.readexactly(1)
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            body = await reader.readexactly(length - 4)
            if kind == b"p":
                self.passwords.append(body.rstrip(b"\0").decode())
            writer.write(message(b"E", b"SFATAL\0C28P01\0Mpassword authentication failed\0\0"))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up instead of answering
        finally:
            writer.close()
