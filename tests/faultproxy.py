"""A fault-injecting proxy for tests: forwards a Unix socket or a loopback TCP port to an upstream
(the Docker engine's socket, a test Postgres) and, on demand, holds back the upstream's answers
(:meth:`FaultProxy.stall`, a stalled engine) or cuts every connection and refuses new ones
(:meth:`FaultProxy.cut`, a runner cut off from its database). It runs its own asyncio loop on a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class FaultProxy:
    """Listen on ``listen`` (a Path: a Unix socket; an int: a 127.0.0.1 port, 0 for any) and forward
    each connection to ``upstream`` (a Path, or a ``(host, port)`` pair)."""

    def __init__(self, listen: Path | int, upstream: Path | tuple[str, int]) -> None:
        self.listen, self.upstream = listen, upstream
        self.loop = asyncio.new_event_loop()
        self._open = asyncio.Event()  # set: answers flow; clear: they are held back (a stall)
        self._both = False  # a stall holds the requests too (a frozen link: upstream sees nothing)
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-proxy", daemon=True)

    # --- control, from the test's thread --------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def stall(self, *, both: bool = False) -> None:
        """Hold back every answer from upstream until :meth:`release`; requests still go through,
        unless ``both`` (then nothing goes either way, as on a frozen network link)."""
        self._both = both
        self.loop.call_soon_threadsafe(self._open.clear)

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self._open.set)

    def cut(self) -> None:
        """Close every connection and refuse new ones until :meth:`restore`."""
        self._call(self._cut_all())

    def restore(self) -> None:
        self._cut = False

    def close(self) -> None:
        self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def _call(self, coro: Awaitable[None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)  # type: ignore[arg-type]

    # --- the loop -------------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._open.set()
        if isinstance(self.listen, Path):
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.listen))
        else:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.listen)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.upstream, Path):
            return await asyncio.open_unix_connection(str(self.upstream))
        return await asyncio.open_connection(*self.upstream)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        self.connections += 1
        up_reader, up_writer = await self._connect()
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer, held=False),
                                 self._pump(up_reader, writer, held=True))
        except asyncio.CancelledError:
            pass  # closing the proxy: asyncio's server callback would report a cancelled task as an error
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, held: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                if held or self._both:
                    await self._open.wait()
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            dst.close()

    async def _cut_all(self) -> None:
        self._cut = True
        for w in list(self._writers):
            w.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
