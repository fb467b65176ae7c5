"""The relay in a granted job's container, run before the launcher (see command.relay_code): it listens
on the job's own 127.0.0.1:3128 and forwards each connection to the proxy's Unix socket.

It forks once; the child serves every connection with one selector loop (one process however many
connections: the job's process limit counts it once), reading from one side only while nothing is
waiting to be written to the other (so at most 64 KiB per direction is held), with half-closes passed
on. The job gains nothing by replacing it: the socket leads to the proxy and nowhere else.

It runs with the job image's Python, so it uses the standard library only. This file only defines
_egress_relay and _EgressRelay; relay_code appends the call that starts it, then deletes every name
defined here.
"""

import os
import selectors
import socket


def _egress_relay(path: str, port: int) -> int:
    """Listen on 127.0.0.1:port (0: any free port), fork the relay's process, and return the port."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    port = listener.getsockname()[1]
    alive, held = os.pipe()  # the child ends when the job's process does (and so closes its end)
    if os.fork():
        listener.close()
        os.close(alive)
        return port  # "held" stays open for as long as this process lives
    try:
        os.close(held)
        _EgressRelay(listener, alive, path).serve()
    finally:
        os._exit(0)


class _EgressRelay:
    """The child's selector loop: each accepted TCP connection paired with a connection to the proxy's
    socket (its peer), and what is waiting to be written to each side."""

    R, W = selectors.EVENT_READ, selectors.EVENT_WRITE

    def __init__(self, listener: socket.socket, alive: int, path: str) -> None:
        self.listener, self.alive, self.path = listener, alive, path
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, self.R)
        self.sel.register(alive, self.R)
        self.peer: dict[socket.socket, socket.socket] = {}
        self.out: dict[socket.socket, bytes] = {}  # the bytes waiting to be sent to each socket
        self.eof: set[socket.socket] = set()  # the sockets whose sender has half-closed

    def serve(self) -> None:
        """Dispatch events until the job's process ends (the pipe's other end closes)."""
        while all(self.dispatch(key.fileobj, events) for key, events in self.sel.select()):
            pass

    def dispatch(self, fileobj: object, events: int) -> bool:
        """Handle one ready file; False once the job's process has ended."""
        if fileobj == self.alive:
            return False
        if fileobj is self.listener:
            self.accept()
        elif isinstance(fileobj, socket.socket):
            # a socket closed earlier in this batch (with its peer) is no longer in peer
            if fileobj in self.peer and events & self.W:
                self.write(fileobj)
            if fileobj in self.peer and events & self.R:
                self.read(fileobj)
        return True

    def want(self, s: socket.socket) -> None:
        """Register s for the events it can act on now (none: unregistered)."""
        reading = s not in self.eof and not self.out[self.peer[s]]
        events = (self.R if reading else 0) | (self.W if self.out[s] else 0)
        known = s in self.sel.get_map()
        if not events:
            if known:
                self.sel.unregister(s)
        elif known:
            self.sel.modify(s, events)
        else:
            self.sel.register(s, events)

    def close(self, s: socket.socket) -> None:
        """Close s and its peer and forget both."""
        for x in (s, self.peer[s]):
            if x in self.sel.get_map():
                self.sel.unregister(x)
            x.close()
            self.peer.pop(x, None)
            self.out.pop(x, None)
            self.eof.discard(x)

    @staticmethod
    def shut(s: socket.socket) -> None:
        """Pass a half-close on: no more bytes will be sent to s."""
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def settle(self, s: socket.socket) -> None:
        """After a read or write on s: close the pair once both sides are done, else re-register both."""
        p = self.peer[s]
        if s in self.eof and p in self.eof and not self.out[s] and not self.out[p]:
            self.close(s)
        else:
            self.want(s)
            self.want(p)

    def accept(self) -> None:
        """Pair a new TCP connection with a connection to the proxy's socket (or drop it if that fails)."""
        c, _ = self.listener.accept()
        u = socket.socket(socket.AF_UNIX)
        try:
            u.connect(self.path)
        except OSError:
            c.close()
            u.close()
            return
        c.setblocking(False)
        u.setblocking(False)
        self.peer[c], self.peer[u], self.out[c], self.out[u] = u, c, b"", b""
        self.want(c)
        self.want(u)

    def read(self, s: socket.socket) -> None:
        """Read what s sent (for its peer), or its half-close."""
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.close(s)
            return
        p = self.peer[s]
        if data:
            self.out[p] = data
        else:
            self.eof.add(s)
            if not self.out[p]:
                self.shut(p)
        self.settle(s)

    def write(self, s: socket.socket) -> None:
        """Send s what is waiting for it; pass its peer's half-close on once all of it is sent."""
        try:
            n = s.send(self.out[s])
        except BlockingIOError:
            return
        except OSError:
            self.close(s)
            return
        self.out[s] = self.out[s][n:]
        if not self.out[s] and self.peer[s] in self.eof:
            self.shut(s)
        self.settle(s)
