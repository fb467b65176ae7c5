"""The job container's configuration, and the guard that refuses unsafe ones (no Docker needed)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from docker.types import DriverConfig, Mount

from runner import egress, sandbox
from runner.errors import SandboxError
from runner.sandbox import RunSpec, container_config, refuse_unsafe

SPEC = RunSpec(job_id=1, owner="o", thread_id="telegram:1", script="a.py", jobs_dir=Path("/d/telegram_1/jobs"),
               image="img", user="10001:10001")


def test_default_config_is_locked_down() -> None:
    cfg = container_config(SPEC)
    assert cfg["network_mode"] == "none" and cfg["read_only"] and cfg["cap_drop"] == ["ALL"]
    assert cfg["security_opt"] == ["no-new-privileges:true"] and cfg["init"] is True
    assert cfg["mem_limit"] == cfg["memswap_limit"] == "256m"
    assert cfg["pids_limit"] == 64 and cfg["nano_cpus"] == 1_000_000_000
    assert cfg["working_dir"] == "/work"
    assert cfg["command"] == ["python3", "-u", "-c", sandbox.LAUNCHER, "0", "jobs/a.py"]
    assert [(m["Source"], m["Target"]) for m in cfg["mounts"]] == [("/d/telegram_1/jobs", "/work/jobs")]
    assert "HTTP_PROXY" not in cfg["environment"]
    refuse_unsafe(cfg, SPEC.jobs_dir)


VOLUME = "runner-job-1-0123abcd"


def test_granted_run_has_no_network_only_the_proxy_socket() -> None:
    cfg = container_config(SPEC, VOLUME)
    assert cfg["network_mode"] == "none"
    assert cfg["environment"]["HTTPS_PROXY"] == "http://127.0.0.1:3128"
    assert cfg["mounts"][1] == {"Target": "/run/egress", "Source": VOLUME, "Type": "volume", "ReadOnly": True,
                                "VolumeOptions": {"NoCopy": True}}
    assert cfg["command"] == ["python3", "-u", "-c", sandbox.RELAY + sandbox.LAUNCHER, "0", "jobs/a.py"]
    refuse_unsafe(cfg, SPEC.jobs_dir)


def _egress_mount(**change: object) -> dict:
    return {**container_config(SPEC, VOLUME)["mounts"][1], **change}


@pytest.mark.parametrize("mount", [
    _egress_mount(ReadOnly=False), _egress_mount(Target="/work/x"), _egress_mount(Type="bind"),
    _egress_mount(Source="/var/run"), _egress_mount(Source="other-volume"), _egress_mount(VolumeOptions={}),
    _egress_mount(BindOptions={"Propagation": "shared"}),
])
def test_only_the_read_only_proxy_socket_volume_may_be_added(mount: dict) -> None:
    cfg = container_config(SPEC, VOLUME)
    refuse_unsafe(cfg, SPEC.jobs_dir)
    with pytest.raises(SandboxError, match="mounts"):
        refuse_unsafe(cfg | {"mounts": [cfg["mounts"][0], mount]}, SPEC.jobs_dir)
    with pytest.raises(SandboxError, match="mounts"):  # and only one of them
        refuse_unsafe(cfg | {"mounts": [*cfg["mounts"], cfg["mounts"][1]]}, SPEC.jobs_dir)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"privileged": True}, "privileged"),
        ({"network_mode": "host"}, "network 'host'"),
        ({"network_mode": "bridge"}, "network 'bridge'"),
        ({"network_mode": "container:abc"}, "network"),
        ({"network_mode": "runner-job-1-abc"}, "network"),  # a job never joins a network, grant or not
        ({"pid_mode": "host"}, "pid_mode"),
        ({"cap_add": ["SYS_ADMIN"]}, "cap_add"),
        ({"devices": ["/dev/sda:/dev/sda"]}, "devices"),
        ({"volumes": {"/var/run/docker.sock": {"bind": "/s"}}}, "volumes"),
        ({"mounts": [Mount("/work/jobs", "/d/telegram_1/jobs", type="bind"), Mount("/etc", "/etc", type="bind")]},
         "mounts"),
        ({"mounts": [Mount("/work/jobs", "/d/telegram_2/jobs", type="bind")]}, "mounts"),
        ({"user": "0:0"}, "root user"),
        ({"user": "root"}, "root user"),
        ({"environment": {"DATABASE_URL": "x"}}, "host environment"),
        ({"read_only": False}, "writable root"),
    ],
)
def test_unsafe_configs_are_refused(change: dict, problem: str) -> None:
    cfg = container_config(SPEC) | change
    with pytest.raises(SandboxError, match=problem):
        refuse_unsafe(cfg, SPEC.jobs_dir)


@pytest.mark.parametrize("network", ["host", "container:abc", "none"])
def test_the_egress_proxy_never_joins_another_namespace(network: str) -> None:
    from runner.errors import ConfigError
    from runner.sandbox import refuse_unsafe_proxy
    from runner.settings import Settings

    with pytest.raises(SandboxError, match=f"network {network!r}"):
        refuse_unsafe_proxy(network)
    with pytest.raises(ConfigError, match="RUNNER_EGRESS_NETWORK"):
        Settings.from_env({"RUNNER_EGRESS_NETWORK": network})
    refuse_unsafe_proxy("bridge")  # the default passes


def test_squid_config_allows_only_the_grant() -> None:
    conf = egress.squid_config(["api.example.com", "*.example.org"], ["203.0.113.0/24"])
    assert "http_port 127.0.0.1:3128" in conf.splitlines()  # its own loopback only
    assert "acl granted_names dstdomain -n api.example.com" in conf
    assert "acl granted_patterns dstdom_regex -n -i ^([a-z0-9-]+\\.)+example\\.org$" in conf
    for net in ("10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "203.0.113.0/24",
                "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "64:ff9b::/96", "::ffff:0:0/96", "2002::/16"):
        assert f"acl blocked dst {net}" in conf
    rules = [ln for ln in conf.splitlines() if ln.startswith("http_access")]
    assert rules == ["http_access deny manager", "http_access deny !web_ports", "http_access deny CONNECT !tls_port",
                     "http_access deny !CONNECT !plain_http", "http_access deny !granted_names !granted_patterns",
                     "http_access deny blocked", "http_access allow all"]


# The IANA special-purpose registries (as of 2024), IPv4 and IPv6: every entry is refused.
IANA = ["0.0.0.0/8", "0.0.0.0/32", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32", "192.0.0.170/32",
        "192.0.0.171/32", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
        "::1/128", "::/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001::/32",
        "2001:1::1/128", "2001:1::2/128", "2001:2::/48", "2001:3::/32", "2001:4:112::/48", "2001:20::/28",
        "2001:30::/28", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7",
        "fe80::/10"]


def test_every_special_purpose_range_is_blocked() -> None:
    blocked = [ipaddress.ip_network(n) for n in egress.blocked_networks()]
    for entry in IANA:
        net = ipaddress.ip_network(entry)
        assert any(net.version == b.version and net.subnet_of(b) for b in blocked), entry  # type: ignore[arg-type]


def test_an_allowed_address_is_cut_out_of_its_range_and_nothing_more() -> None:
    blocked = [ipaddress.ip_network(n) for n in egress.blocked_networks(["192.0.2.2/32"], ["198.18.0.2", "fd00::7"])]

    def refused(address: str) -> bool:
        return any(ipaddress.ip_address(address) in b for b in blocked)

    assert not refused("198.18.0.2") and not refused("fd00::7")
    assert refused("198.18.0.1") and refused("198.18.0.3") and refused("198.19.255.255") and refused("fd00::8")
    assert refused("192.0.2.2") and refused("10.1.2.3") and not refused("93.184.215.14")


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     |-- 192.0.2.2
        /32 host LOCAL
     |-- 203.0.113.0
        /24 link UNICAST
"""
IF_INET6 = ("00000000000000000000000000000001 01 80 10 80       lo\n"
            "fe8000000000000000fc00fffe000001 02 40 20 80     eth0\n")


def test_local_addresses_from_proc_net() -> None:
    assert egress.parse_local_addresses(FIB_TRIE + IF_INET6) == [
        "127.0.0.0/8", "127.0.0.1/32", "192.0.2.2/32", "::1/128", "fe80::fc:ff:fe00:1/128"]


@pytest.mark.parametrize(("host", "pattern", "ok"), [
    ("api.example.com", "*", True), ("api.example.com", "*.example.com", True),
    ("example.com", "*.example.com", False), ("*.a.example.com", "*.example.com", True),
    ("evil.com", "*.example.com", False), ("api.example.com", "api.example.com", True),
])
def test_operator_maximum(host: str, pattern: str, ok: bool) -> None:
    assert egress.covered(host, pattern) is ok


def test_doctor_knows_which_engines_are_too_old() -> None:
    from runner.doctor import engine_too_old

    assert engine_too_old("19.03.15") and engine_too_old("20.9.0")
    assert not engine_too_old("20.10.24+dfsg1") and not engine_too_old("27.3.1") and not engine_too_old("")


@pytest.mark.parametrize(("entries", "pins"), [
    (["a.test=2001:db8::1"], [("a.test", "2001:db8::1")]), (["A.Test.:192.0.2.1"], [("a.test", "192.0.2.1")]),
    ([" b.test = ::ffff:192.0.2.1 "], [("b.test", "::ffff:c000:201")]),
])
def test_pins(entries: list[str], pins: list[tuple[str, str]]) -> None:
    assert egress.parse_pins(entries) == pins


def test_allowed_addresses_are_single_addresses() -> None:
    from runner.errors import ConfigError
    from runner.settings import Settings

    assert Settings.from_env({"RUNNER_EGRESS_ALLOW_ADDRESSES": "198.18.0.2, fd00::7"}).egress_allow_addresses == (
        "198.18.0.2", "fd00::7")
    with pytest.raises(ConfigError, match="not one IP address"):
        Settings.from_env({"RUNNER_EGRESS_ALLOW_ADDRESSES": "0.0.0.0/0"})


@pytest.mark.parametrize(("runtime", "blocks"), [
    ({"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}, True), ({"path": "runsc"}, True),
    ({"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--host-uds=open"]}, False),
    ({"path": "runc"}, False), ({"path": "/usr/bin/kata-runtime"}, False),
])
def test_gvisor_without_host_sockets_is_recognised(runtime: dict, blocks: bool) -> None:
    assert sandbox.gvisor_blocks_sockets(runtime) is blocks


def test_a_container_another_caller_is_removing_counts_as_gone(caplog: pytest.LogCaptureFixture) -> None:
    """The sweep and the run itself may remove one container at once: the engine answers the second
    with 409 "removal ... is already in progress", which is not a failure worth a warning."""
    import docker
    import requests

    from runner import sandbox

    class Racing:
        name = "raced"

        def __init__(self, explanation: str) -> None:
            self.explanation = explanation

        def remove(self, **_: object) -> None:
            response = requests.Response()
            response.status_code = 409
            raise docker.errors.APIError("409 Client Error", response, explanation=self.explanation)

    with caplog.at_level("WARNING"):
        assert sandbox.remove_container(Racing("removal of container x is already in progress")) is False
    assert caplog.records == []
    with caplog.at_level("WARNING"):
        assert sandbox.remove_container(Racing("something else went wrong")) is False
    assert any("could not remove container raced" in r.getMessage() for r in caplog.records)


COPIED = RunSpec(job_id=1, owner="o", thread_id="telegram:1", script="a.py", jobs_dir=None, image="img",
                 user="10001:10001", files_in=b"")


def test_a_copied_run_mounts_only_an_anonymous_volume_of_its_own_at_work() -> None:
    cfg = container_config(COPIED)
    (mount,) = cfg["mounts"]
    assert (mount["Target"], mount["Source"], mount["Type"], mount["ReadOnly"]) == ("/work", None, "volume", False)
    assert mount["VolumeOptions"]["NoCopy"] is True  # nothing of the image's /work is copied into it
    assert mount["VolumeOptions"]["Labels"]["io.runner.role"] == "jobs"
    refuse_unsafe(cfg, None)
    refuse_unsafe(container_config(COPIED, VOLUME), None)  # beside a granted run's proxy socket


@pytest.mark.parametrize("mount", [
    Mount(target="/work", source="someones-volume", type="volume", no_copy=True),  # a named volume: shared
    Mount(target="/work", source="/d/telegram_1", type="bind"),
    Mount(target="/work", source=None, type="volume", read_only=True, no_copy=True),
    Mount(target="/work/jobs", source=None, type="volume", no_copy=True),  # not at /work
    Mount(target="/work", source=None, type="volume", no_copy=True,
          driver_config=DriverConfig("local", {"type": "none", "o": "bind", "device": "/etc"})),  # a bind in disguise
    Mount(target="/work", source=None, type="volume", no_copy=False),  # filled from the image
])
def test_a_copied_run_refuses_any_other_mount(mount: Mount) -> None:
    cfg = container_config(COPIED) | {"mounts": [mount]}
    with pytest.raises(SandboxError, match="mounts other than"):
        refuse_unsafe(cfg, None)


def test_a_bind_mounted_run_refuses_the_copied_runs_volume() -> None:
    with pytest.raises(SandboxError, match="mounts other than"):
        refuse_unsafe(container_config(COPIED), SPEC.jobs_dir)
