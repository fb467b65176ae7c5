"""A job granted network tries every way around its proxy (the red team's report, one attack per test).

Every address involved belongs to this machine: the host's own interfaces (listeners the test opens
there, on ephemeral ports and on port 80 of single addresses), the gateways of the engine's networks,
and the stand-in servers of test_egress.py on the test's own network in 198.18.0.0/24. Nothing is sent
anywhere else: names are pinned in the proxy's /etc/hosts or are the stand-ins' names on the test's
network, and the job has no network to send a lookup on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator

import docker
import pytest

from runner import doctor, egress, sandbox
from runner.doctor import probes
from runner.errors import ConfigError
from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database

from ..integration.helpers import ROOT, RUNNER_CLI, cli_env, run_burst
from .test_egress import FETCH, OUTER, egress_settings, outer, outer_addresses  # noqa: F401  (fixtures)

THREAD = "telegram:6"


def _host_addresses() -> list[tuple[str, str]]:
    """(address, scope) of every address of this machine's interfaces but loopback, found with `ip`."""
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    return [(a["local"], a.get("scope", "")) for i in json.loads(out) for a in i.get("addr_info", [])
            if a.get("scope") != "host"]


def _gateways(dc: docker.DockerClient) -> list[str]:
    return [c["Gateway"] for n in dc.networks.list() for c in (n.attrs.get("IPAM") or {}).get("Config") or []
            if c.get("Gateway")]


class _Listener:
    """A TCP listener on this machine (all addresses, IPv4 and IPv6) that records who connected."""

    def __init__(self, host: str = "::", port: int = 0, http: bool = False) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.http, self.peers = http, []  # type: ignore[var-annotated]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return  # closed
            self.peers.append(peer)
            with conn:
                conn.settimeout(2)
                if self.http:
                    try:
                        conn.recv(4096)
                        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nHOST SERVICE")
                    except OSError:
                        pass
                else:
                    conn.sendall(b"HOST\n")

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def host_service() -> Iterator[_Listener]:
    listener = _Listener()
    yield listener
    listener.close()


def _run(jobs: Jobs, s: Settings, db: Database, dc: docker.DockerClient, script: str, hosts: list[str]) -> dict:
    job = jobs.schedule_job(thread_id=THREAD, name="esc", script_text=script, at="now", allow_hosts=hosts,
                            limits=Limits(timeout_seconds=90))
    run_burst(s, db, dc)
    row = jobs.get_job(job["id"])
    assert row["status"] == "completed", (row["error_message"], row["output_tail"])
    return row


CONNECT_ALL = (
    "import socket\n"
    "def gateways():\n"
    "    try:\n"
    "        lines = open('/proc/net/route').read().splitlines()[1:]\n"
    "    except OSError:\n"
    "        return []\n"
    "    return [socket.inet_ntoa(bytes.fromhex(f[2])[::-1]) for f in map(str.split, lines) if f[2] != '00000000']\n"
    "scopes = [i for i, name in socket.if_nameindex() if name != 'lo']\n"
    "print('interfaces', [name for _, name in socket.if_nameindex()])\n"
    "for host in TARGETS + gateways():\n"
    "    if ':' in host:\n"
    "        addrs = [(socket.AF_INET6, (host, 0, 0, s)) for s in scopes] if host.startswith('fe80') "
    "else [(socket.AF_INET6, (host, 0, 0, 0))]\n"
    "    else:\n"
    "        addrs = [(socket.AF_INET, (host, 0))]\n"
    "    for family, addr in addrs:\n"
    "        for port in PORTS:\n"
    "            s = socket.socket(family)\n"
    "            s.settimeout(0.5)\n"
    "            try:\n"
    "                s.connect((addr[0], port, *addr[2:]))\n"
    "                print('CONNECTED', addr[0], port)\n"
    "            except OSError as e:\n"
    "                print('refused', addr[0], port, e.errno)\n"
    "            finally:\n"
    "                s.close()\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', 3128), timeout=5).close()\n"
    "    print('PROXY PORT OPEN')\n"
    "except OSError as e:\n"
    "    print('proxy port closed', e)\n"
)


def test_1_no_host_address_is_reachable_around_the_proxy(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient,
        outer: dict[str, str], host_service: _Listener) -> None:  # noqa: F811
    """The host's interfaces, its IPv6 link-local addresses, every engine network's gateway and the
    job's own default route, on the port of a service listening on the host and on usual ports."""
    targets = sorted({a for a, _ in _host_addresses()} | set(_gateways(docker_client)))
    ports = [host_service.port, 22, 80, 3128, 2375]
    script = f"TARGETS = {targets!r}\nPORTS = {ports!r}\n" + CONNECT_ALL
    row = _run(jobs, settings.with_(egress_network=OUTER), db, docker_client, script, ["api.example.test"])
    out = row["output_tail"]
    assert "CONNECTED" not in out, out
    assert not host_service.peers, host_service.peers
    assert "PROXY PORT OPEN" in out, out  # the one way out is there (and the probe can connect at all)


def test_2_proxy_refuses_the_hosts_own_addresses(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient,
        outer: dict[str, str]) -> None:  # noqa: F811
    """Names pinned to the host's own IPv4 addresses and to the gateways, with a service on port 80 there."""
    addresses = sorted({a for a, _ in _host_addresses() if ":" not in a} | set(_gateways(docker_client)))
    services = []
    for address in addresses:
        try:
            services.append(_Listener(address, 80, http=True))
        except OSError as exc:  # a gateway of a network whose bridge is not up here: nothing to serve on
            assert exc.errno == 99, exc  # EADDRNOTAVAIL
    assert services, "no host address could be listened on"
    names = {f"h{i}.host.test": a for i, a in enumerate(addresses)}
    s = settings.with_(egress_network=OUTER, egress_hosts=tuple(f"{n}:{a}" for n, a in names.items()))
    try:
        urls = [f"http://{n}/" for n in names]
        row = _run(jobs, s, db, docker_client, f"URLS = {urls!r}\n" + FETCH, list(names))
    finally:
        for svc in services:
            svc.close()
    out = row["output_tail"]
    for url in urls:
        assert f"DENIED {url} 403" in out, (url, out)
    assert not [p for svc in services for p in svc.peers]


DNS = (
    "import socket\n"
    "for name in NAMES:\n"
    "    try:\n"
    "        print('RESOLVED', name, socket.getaddrinfo(name, 80))\n"
    "    except OSError as e:\n"
    "        print('unresolved', name, e)\n"
    "query = bytes.fromhex('abcd01000001000000000000') + b'\\x03api\\x07example\\x04test\\x00\\x00\\x01\\x00\\x01'\n"
    "for host, port in RESOLVERS:\n"
    "    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)\n"
    "    s.settimeout(0.5)\n"
    "    try:\n"
    "        s.sendto(query, (host, port))\n"
    "        print('ANSWER', host, port, s.recv(512)[:2].hex())\n"
    "    except OSError as e:\n"
    "        print('no answer', host, port, e)\n"
    "    finally:\n"
    "        s.close()\n"
)


def test_3_no_name_resolves_inside_the_job(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient,
        outer: dict[str, str]) -> None:  # noqa: F811
    """Neither the engine's resolver nor a stand-in resolver on the host's addresses answers the job."""
    resolver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    resolver.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    resolver.bind(("::", 0))
    port = resolver.getsockname()[1]
    seen: list[object] = []

    stopping = threading.Event()

    def answer() -> None:  # any query gets an answer: 198.18.0.2
        while True:
            try:
                data, peer = resolver.recvfrom(512)
            except OSError:
                return
            if stopping.is_set():
                return
            seen.append(peer)
            resolver.sendto(data[:2] + b"\x81\x80" + data[4:6] + b"\x00\x01\x00\x00\x00\x00" + data[12:]
                            + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([198, 18, 0, 2]), peer)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    hosts = sorted({a for a, _ in _host_addresses() if not a.startswith("fe80")} | set(_gateways(docker_client)))
    resolvers = [(h, port) for h in hosts] + [("127.0.0.11", 53)]
    # The granted name and the stand-ins' names resolve on the proxy's network; "proxy" was the job's
    # own network's name for its proxy, which Docker's resolver answered itself. (Before the job lost
    # its network only "proxy" was asked: another name might have been forwarded off the machine.)
    names = ["proxy", "api.example.test", "other.denied.test"]
    script = f"NAMES = {names!r}\nRESOLVERS = {resolvers!r}\n" + DNS
    try:
        row = _run(jobs, settings.with_(egress_network=OUTER), db, docker_client, script, ["api.example.test"])
    finally:
        stopping.set()
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as wake:
            wake.sendto(b"", ("::1", port))  # wakes the recvfrom()
        thread.join(timeout=5)
        resolver.close()
    out = row["output_tail"]
    assert "RESOLVED" not in out and "ANSWER" not in out, out
    assert not seen, seen


def test_4_ipv6_pins(settings: Settings) -> None:
    """RUNNER_EGRESS_HOSTS takes name=address (IPv6 too); the old name:IPv4 still works; bad entries say why."""
    s = Settings.from_env({"RUNNER_EGRESS_HOSTS": "v6.test=fd00::5, old.test:192.0.2.9,new.test = 192.0.2.10"})
    assert s.egress_hosts == ("v6.test=fd00::5", "old.test=192.0.2.9", "new.test=192.0.2.10")
    assert egress.parse_pins(s.egress_hosts) == [("v6.test", "fd00::5"), ("old.test", "192.0.2.9"),
                                                 ("new.test", "192.0.2.10")]
    for bad, why in [("v6.test:fd00::5", "name=address"), ("x.test=300.1.1.1", "not an IP address"),
                     ("x.test", "name=address"), ("=192.0.2.1", "host name"), ("a b=192.0.2.1", "host name")]:
        with pytest.raises(ConfigError, match=why):
            Settings.from_env({"RUNNER_EGRESS_HOSTS": bad})


def test_4_an_ipv6_pin_reaches_the_proxy_and_is_refused_there(
        jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient,
        outer: dict[str, str]) -> None:  # noqa: F811
    """Pins to the host's IPv6 addresses, to a mapped and a translated form of a host address, and to
    IPv6 special ranges: the proxy refuses them all (403, not the 503 of a name it cannot resolve)."""
    v6 = [a for a, scope in _host_addresses() if ":" in a and scope != "link"]
    pins = {f"p{i}.v6.test": a for i, a in enumerate([*v6, "::ffff:172.17.0.1", "64:ff9b::c000:202", "2002:c000:202::1",
                                                     "fd00::1", "2001:db8::1", "::1"])}
    # The control: the IPv6 address of a stand-in server, allowed back, is reached (so the proxy has IPv6).
    members = docker_client.networks.get(OUTER).attrs["Containers"].values()
    api_v6 = next(m["IPv6Address"].split("/")[0] for m in members if m["IPv4Address"].startswith(outer["api.example.test"] + "/"))
    pins["api.v6.test"] = api_v6
    s = settings.with_(egress_network=OUTER, egress_hosts=tuple(f"{n}={a}" for n, a in pins.items()),
                       egress_allow_addresses=(api_v6,))
    urls = [f"http://{n}/" for n in pins]
    row = _run(jobs, s, db, docker_client, f"URLS = {urls!r}\n" + FETCH, list(pins))
    assert '"server": "api.example.test"' in row["output_tail"], row["output_tail"]
    for url in urls[:-1]:
        assert f"DENIED {url} 403" in row["output_tail"], (url, row["output_tail"])


def test_5_doctor_checks_that_no_host_address_is_reachable(
        settings: Settings, docker_client: docker.DockerClient) -> None:
    check = doctor.egress_isolation(settings, docker_client)
    assert check.ok, check.detail
    assert "no host address reachable" in check.detail
    # its probe can see a connection: the proxy's port, from the same sample job, is reachable
    spec = doctor.sample_spec(settings, settings.data_dir, allow_hosts=("example.com",))
    reached = probes.egress_probe(spec, [("127.0.0.1", egress.PROXY_PORT), ("172.17.0.1", 22)], docker_client)
    assert reached == {("127.0.0.1", egress.PROXY_PORT): True, ("172.17.0.1", 22): False}


RAW = (
    "import socket\n"
    "for name, request in REQUESTS:\n"
    "    s = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n"
    "    s.sendall(request.encode())\n"
    "    got = b''\n"
    "    try:\n"
    "        while len(got) < 65536 and (chunk := s.recv(65536)):\n"
    "            got += chunk\n"
    "    except OSError:\n"
    "        pass\n"
    "    status = got.split(b'\\r\\n', 1)[0].decode(errors='replace')\n"
    "    print(name, repr(status), 'STANDIN' if b'\"server\": \"api.example.test\"' in got else '')\n"
)


def test_the_proxys_neighbours(jobs: Jobs, egress_settings: Settings, db: Database,  # noqa: F811
                               docker_client: docker.DockerClient, outer_addresses: tuple[str, ...]) -> None:  # noqa: F811
    """Squid's own management and icon URLs, CONNECT to other ports, other schemes, requests addressed
    by IP (even an allowed one), origin-form requests with a forged Host, redirects to the metadata
    and a private address: each is refused, or goes to the granted server and no further."""
    ip4 = next(a for a in outer_addresses if ":" not in a)
    ip6 = next(a for a in outer_addresses if ":" in a)
    get = "GET {} HTTP/1.0\r\n\r\n".format
    requests = [
        ("mgr-local", get("http://127.0.0.1:3128/squid-internal-mgr/menu")),
        ("mgr-proxy", get("http://proxy:3128/squid-internal-mgr/menu")),
        ("cache-object", get("cache_object://localhost/menu")),
        ("connect-80", "CONNECT api.example.test:80 HTTP/1.1\r\nHost: api.example.test:80\r\nConnection: close\r\n\r\n"),
        ("connect-22", "CONNECT api.example.test:22 HTTP/1.1\r\nHost: api.example.test:22\r\nConnection: close\r\n\r\n"),
        ("connect-ip", f"CONNECT {ip4}:443 HTTP/1.1\r\nHost: {ip4}:443\r\nConnection: close\r\n\r\n"),
        ("by-ip4", get(f"http://{ip4}/")), ("by-ip6", get(f"http://[{ip6}]/")),
        ("ftp", get("ftp://api.example.test:80/")), ("port-8080", get("http://api.example.test:8080/")),
        ("origin-form", "GET /latest/meta-data/ HTTP/1.1\r\nHost: metadata.test\r\nConnection: close\r\n\r\n"),
        ("granted-mgr", get("http://api.example.test/squid-internal-mgr/menu")),
        ("granted-static", get("http://api.example.test/squid-internal-static/icons/SN.png")),
    ]
    script = f"REQUESTS = {requests!r}\n" + RAW
    redirect = ["http://api.example.test/redirect/http://metadata.test/latest/meta-data/",
                "http://api.example.test/redirect/http://10.255.255.1/"]
    script += f"URLS = {redirect!r}\n" + FETCH
    row = _run(jobs, egress_settings, db, docker_client, script, ["api.example.test", "metadata.test", "private.test"])
    lines = {ln.split(" ", 1)[0]: ln for ln in row["output_tail"].splitlines()}
    for name in ("mgr-local", "mgr-proxy", "cache-object", "connect-80", "connect-22", "connect-ip", "by-ip4", "by-ip6",
                 "ftp", "port-8080"):
        assert "403" in lines[name], lines[name]
    assert " 200 " not in lines["origin-form"] and "STANDIN" not in lines["origin-form"], lines["origin-form"]
    # squid's own pages are never served: its manager path is refused whatever the host, and its icons
    # path on a granted host is the granted server's
    assert "403" in lines["granted-mgr"], lines["granted-mgr"]
    assert "200" in lines["granted-static"] and "STANDIN" in lines["granted-static"], lines["granted-static"]
    for url in redirect:
        assert f"DENIED {url} 403" in row["output_tail"], row["output_tail"]


def test_a_granted_job_under_gvisor_reaches_its_proxy(jobs: Jobs, egress_settings: Settings, db: Database,  # noqa: F811
                                                      docker_client: docker.DockerClient) -> None:
    """Under runsc with --host-uds=open, a granted job works; without it, the run fails saying what to do."""
    runsc = (docker_client.info().get("Runtimes") or {}).get("runsc")
    if runsc is None:
        pytest.skip("the runsc runtime is not registered with Docker (run: make gvisor)")
    urls = ["http://api.example.test/g", "http://other.denied.test/h"]
    job = jobs.schedule_job(thread_id=THREAD, name="gv", script_text=f"URLS = {urls!r}\n" + FETCH, at="now",
                            allow_hosts=["api.example.test"])
    run_burst(egress_settings.with_(container_runtime="runsc"), db, docker_client)
    row = jobs.get_job(job["id"])
    if sandbox.gvisor_blocks_sockets(runsc):
        assert row["status"] == "failed" and "--host-uds=open" in row["error_message"], row["error_message"]
        return
    assert row["status"] == "completed", (row["error_message"], row["output_tail"])
    assert "OK http://api.example.test/g" in row["output_tail"], row["output_tail"]
    assert "DENIED http://other.denied.test/h 403" in row["output_tail"], row["output_tail"]


@pytest.mark.runtimes("runc", why="it checks the runner's start-up, not a job")
def test_2_runner_up_finds_the_hosts_addresses_at_start_up(settings: Settings) -> None:
    r = subprocess.run([*RUNNER_CLI, "up", "--burst", "--no-build"], env=cli_env(settings, RUNNER_ID=settings.runner_id),
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    found = [line for line in r.stderr.splitlines() if "refuses the engine host's" in line]
    assert found, r.stderr[-2000:]
    assert int(found[0].split("host's ")[1].split()[0]) >= 2  # at least the bridge's gateway and eth0
