"""Network grants through the egress proxy, against stand-in HTTP servers on the proxy's outer network.

The outer network is a Docker bridge made for the test in 198.18.0.0/24 (a benchmarking range, which
the proxy refuses like every special-purpose range: the stand-ins' two addresses are allowed back with
RUNNER_EGRESS_ALLOW_ADDRESSES); every address involved is on this machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from runner.errors import ValidationError
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database

from ..integration.helpers import run_burst

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
THREAD = "telegram:5"
OUTER = "runner-test-egress"
SERVER = (
    "import http.server, json, socket\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        if self.path.startswith('/redirect/'):\n"
    "            self.send_response(302); self.send_header('Location', self.path[len('/redirect/'):])\n"
    "            self.send_header('Content-Length', '0'); self.end_headers(); return\n"
    "        body = json.dumps({'price': 42.5, 'server': NAME, 'path': self.path}).encode()\n"
    "        self.send_response(200); self.send_header('Content-Type', 'application/json')\n"
    "        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n"
    "class S(http.server.HTTPServer):\n"
    "    address_family = socket.AF_INET6  # and IPv4: dual-stack\n"
    "S(('::', 80), H).serve_forever()\n"
)


@pytest.fixture(scope="module")
def outer(docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """The proxy's outer network with two stand-in APIs: one to allow, one that is never granted."""
    for old in docker_client.networks.list(names=[OUTER]):
        old.remove()
    # Dual-stack, so that the proxy has IPv6 and its refusals of IPv6 destinations are its rules' doing.
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="198.18.0.0/24"),
                                                 docker.types.IPAMPool(subnet="fd00:7e57:1::/64")])
    net = docker_client.networks.create(OUTER, driver="bridge", ipam=ipam, enable_ipv6=True,
                                        labels={"io.runner.test": "egress"})
    servers = []
    try:
        ips = {}
        for name in ("api.example.test", "other.denied.test"):
            c = docker_client.containers.create(
                "runner-sandbox:latest", ["python3", "-c", f"NAME = {name!r}\n" + SERVER], user="0",
                detach=True, labels={"io.runner.test": "egress"}, network=OUTER,
                networking_config={OUTER: docker_client.api.create_endpoint_config(aliases=[name])},
            )
            servers.append(c)
            c.start()
            c.reload()
            ips[name] = c.attrs["NetworkSettings"]["Networks"][OUTER]["IPAddress"]
        yield ips
    finally:
        for c in servers:
            c.remove(force=True)
        net.remove()


@pytest.fixture
def outer_addresses(outer: dict[str, str], docker_client: docker.DockerClient) -> tuple[str, ...]:
    """Every address (IPv4 and IPv6) of the stand-in servers."""
    members = docker_client.networks.get(OUTER).attrs["Containers"].values()
    return tuple(m[k].split("/")[0] for m in members for k in ("IPv4Address", "IPv6Address") if m.get(k))


@pytest.fixture
def egress_settings(settings: Settings, outer_addresses: tuple[str, ...]) -> Settings:
    # The stand-ins' addresses are in a special-purpose range (and on one of the engine's networks):
    # the proxy refuses them unless the operator allows each one back.
    return settings.with_(egress_network=OUTER, egress_allow_addresses=outer_addresses,
                          egress_hosts=("private.test=10.255.255.1", "metadata.test:169.254.169.254"))


def _run(jobs: Jobs, s: Settings, db: Database, dc: docker.DockerClient, script: str, hosts: list[str]) -> dict:
    job = jobs.schedule_job(thread_id=THREAD, name="net", script_text=script, at="now", allow_hosts=hosts)
    run_burst(s, db, dc)
    return jobs.get_job(job["id"])


FETCH = (
    "import urllib.request, sys\n"
    "for url in sys.argv[1:] or URLS:\n"
    "    try:\n"
    "        with urllib.request.urlopen(url, timeout=5) as r:\n"
    "            print('OK', url, r.read().decode())\n"
    "    except Exception as e:\n"
    "        print('DENIED', url, getattr(e, 'code', None) or e)\n"
)


def test_price_check_example_reaches_its_granted_api(jobs: Jobs, egress_settings: Settings, db: Database,
                                                     docker_client: docker.DockerClient) -> None:
    job = jobs.schedule_job(thread_id=THREAD, name="check_price", script=EXAMPLES / "check_price.py", at="now",
                            allow_hosts=["api.example.test"])
    printed = run_burst(egress_settings, db, docker_client)
    row = jobs.get_job(job["id"])
    assert row["status"] == "completed", (row["error_message"], row["output_tail"])
    assert "price 42.5 (api)" in row["output_tail"]
    assert "Price alert: $42.50" in printed
    out = json.loads((egress_settings.data_dir / "telegram_5" / "jobs" / "check_price_output.json").read_text())
    assert out["price"] == 42.5


def test_grant_allows_only_the_granted_names(jobs: Jobs, egress_settings: Settings, db: Database,
                                             docker_client: docker.DockerClient, outer: dict[str, str]) -> None:
    urls = ["http://api.example.test/a", "http://other.denied.test/b", f"http://{outer['other.denied.test']}/c",
            "http://private.test/d", "http://metadata.test/latest/meta-data/", "http://169.254.169.254/e",
            "http://10.255.255.1/f", "http://127.0.0.1:5432/g", "http://api.example.test:8080/h"]
    row = _run(jobs, egress_settings, db, docker_client, f"URLS = {urls!r}\n" + FETCH,
               ["api.example.test", "private.test", "metadata.test"])
    out = row["output_tail"]
    assert row["status"] == "completed", row["error_message"]
    assert "OK http://api.example.test/a" in out and '"server": "api.example.test"' in out
    for url in urls[1:]:
        assert f"DENIED {url} 403" in out, (url, out)


def test_wildcard_grant(jobs: Jobs, egress_settings: Settings, db: Database, docker_client: docker.DockerClient) -> None:
    urls = ["http://api.example.test/", "http://other.denied.test/"]
    row = _run(jobs, egress_settings, db, docker_client, f"URLS = {urls!r}\n" + FETCH, ["*.example.test"])
    assert "OK http://api.example.test/" in row["output_tail"]
    assert "DENIED http://other.denied.test/ 403" in row["output_tail"]


def test_no_direct_connection_around_the_proxy(jobs: Jobs, egress_settings: Settings, db: Database,
                                               docker_client: docker.DockerClient, outer: dict[str, str]) -> None:
    script = (
        "import socket\n"
        f"for host in [{outer['api.example.test']!r}, {outer['other.denied.test']!r}, '198.18.0.1', '172.17.0.1',"
        " '169.254.169.254', 'api.example.test']:\n"
        "    s = socket.socket()\n    s.settimeout(3)\n"
        "    try:\n        s.connect((host, 80))\n        print('CONNECTED', host)\n"
        "    except OSError as e:\n        print('blocked', host, e)\n"
    )
    row = _run(jobs, egress_settings, db, docker_client, script, ["api.example.test"])
    assert row["status"] == "completed", row["error_message"]
    assert "CONNECTED" not in row["output_tail"], row["output_tail"]


def test_proxy_and_its_volume_are_removed_after_the_run(jobs: Jobs, egress_settings: Settings, db: Database,
                                                        docker_client: docker.DockerClient, store_id: str) -> None:
    _run(jobs, egress_settings, db, docker_client, "print('hi')\n", ["api.example.test"])
    mine = {"label": ["io.runner.managed=true", f"io.runner.store={store_id}"]}  # not other tests' runs
    assert not docker_client.networks.list(filters=mine)
    assert not docker_client.containers.list(all=True, filters=mine)
    assert not docker_client.volumes.list(filters=mine)


@pytest.mark.parametrize(("hosts", "message"), [
    (["10.0.0.1"], "not IP addresses"), (["169.254.169.254"], "not IP addresses"), (["localhost"], "not a host name"),
    (["api.example.test/x"], "not a host name"), (["*"], "not a host name"),
])
def test_bad_grants_are_refused(jobs: Jobs, hosts: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        jobs.schedule_job(thread_id=THREAD, name="x", script_text="pass\n", allow_hosts=hosts)


def test_grants_outside_the_operator_maximum_are_refused(jobs: Jobs, settings: Settings, db: Database) -> None:
    strict = Jobs(settings.with_(egress_allow=("*.example.test",)), db)
    with pytest.raises(ValidationError, match="outside what the operator allows"):
        strict.schedule_job(thread_id=THREAD, name="x", script_text="pass\n", allow_hosts=["evil.example.org"])
    row = strict.schedule_job(thread_id=THREAD, name="x", script_text="pass\n", allow_hosts=["api.example.test"])
    assert row["allow_hosts"] == ["api.example.test"]


def test_the_orphan_sweep_removes_proxy_volumes_of_ended_runs(docker_client: docker.DockerClient,
                                                              store_id: str) -> None:
    from runner import sandbox

    labels = {"io.runner.managed": "true", "io.runner.store": store_id}
    names = {job: f"runner-job-{job}-0123abcd" for job in ("999997", "999998", "999999")}
    for job, name in names.items():
        docker_client.volumes.create(name, labels={**labels, "io.runner.job-id": job})
    try:
        sandbox.remove_orphan_volumes(docker_client, store_id, {"999998"})  # all younger than a minute
        sandbox.remove_orphan_volumes(docker_client, store_id, {"999998"}, min_age=0)
        left = {v.name for v in docker_client.volumes.list(filters={"label": f"io.runner.store={store_id}"})}
        assert left == {names["999998"]}  # the live run's volume stays
    finally:
        for name in names.values():
            for v in docker_client.volumes.list(filters={"name": name}):
                v.remove(force=True)


def test_an_egress_image_from_before_the_socket_is_refused_clearly(docker_client: docker.DockerClient,
                                                                    tmp_path: Path) -> None:
    from runner import sandbox
    from runner.errors import ImageMissing

    spec = sandbox.RunSpec(job_id=1, owner="o", thread_id="telegram:1", script="a.py", jobs_dir=tmp_path,
                           image="runner-sandbox:latest", user="10001:10001", allow_hosts=("api.example.test",),
                           egress_image="runner-sandbox:latest")  # an image without the egress version label
    with pytest.raises(ImageMissing, match="older than this runner.*make images"):
        sandbox.EgressProxy(docker_client, spec).start()
