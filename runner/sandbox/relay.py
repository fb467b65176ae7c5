"""The relay in a granted job's container, run before the launcher (see command.relay_code): it listens
on the job's own 127.0.0.1:3128 and forwards each connection to the proxy's Unix socket.

It forks once; the child serves every connection with one selector loop (one process however many
connections: the job's process limit counts it once), reading from one side only while nothing is
waiting to be written to the other (so at most 64 KiB per direction is held), with half-closes passed
on. The job gains nothing by replacing it: the socket leads to the proxy and nowhere else. This file
only defines the two functions; relay_code appends the call that starts it.
"""


def _egress_relay(path, port):
    import os
    import selectors
    import socket
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    port = listener.getsockname()[1]
    alive, held = os.pipe()  # the child ends when the job's process does (and so closes its end)
    if os.fork():
        listener.close(), os.close(alive)
        return port  # "held" stays open for as long as this process lives
    try:
        os.close(held)
        _egress_serve(listener, alive, path, selectors, socket)
    finally:
        os._exit(0)

def _egress_serve(listener, alive, path, selectors, socket):
    R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
    sel = selectors.DefaultSelector()
    sel.register(listener, R)
    sel.register(alive, R)
    peer, out, eof = {}, {}, set()

    def want(s):
        ev = (R if s not in eof and not out[peer[s]] else 0) | (W if out[s] else 0)
        known = s in sel.get_map()
        if not ev:
            if known:
                sel.unregister(s)
        elif known:
            sel.modify(s, ev)
        else:
            sel.register(s, ev)

    def close(s):
        for x in (s, peer[s]):
            if x in sel.get_map():
                sel.unregister(x)
            x.close()
            peer.pop(x, None), out.pop(x, None), eof.discard(x)

    def shut(s):
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def settle(s):
        p = peer[s]
        if s in eof and p in eof and not out[s] and not out[p]:
            close(s)
        else:
            want(s), want(p)

    def accept():
        c, _ = listener.accept()
        u = socket.socket(socket.AF_UNIX)
        try:
            u.connect(path)
        except OSError:
            c.close(), u.close()
            return
        c.setblocking(False), u.setblocking(False)
        peer[c], peer[u], out[c], out[u] = u, c, b"", b""
        want(c), want(u)

    def read(s):
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            return close(s)
        if data:
            out[peer[s]] = data
        else:
            eof.add(s)
            if not out[peer[s]]:
                shut(peer[s])
        settle(s)

    def write(s):
        try:
            n = s.send(out[s])
        except BlockingIOError:
            return
        except OSError:
            return close(s)
        out[s] = out[s][n:]
        if not out[s] and peer[s] in eof:
            shut(s)
        settle(s)

    while True:
        for key, ev in sel.select():
            s = key.fileobj
            if s == alive:
                return
            if s is listener:
                accept()
                continue
            if s in peer and ev & W:
                write(s)
            if s in peer and ev & R:
                read(s)
