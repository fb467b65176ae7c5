"""The job container's configuration, and the guard that refuses unsafe ones (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker.types import Mount

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


def test_granted_run_uses_its_internal_network_and_the_proxy() -> None:
    cfg = container_config(SPEC, "runner-job-1-abc")
    assert cfg["network_mode"] == "runner-job-1-abc"
    assert cfg["environment"]["HTTPS_PROXY"] == "http://proxy:3128"
    refuse_unsafe(cfg, SPEC.jobs_dir)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"privileged": True}, "privileged"),
        ({"network_mode": "host"}, "network 'host'"),
        ({"network_mode": "bridge"}, "network 'bridge'"),
        ({"network_mode": "container:abc"}, "network"),
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
    assert "acl granted_names dstdomain api.example.com" in conf
    assert "acl granted_patterns dstdom_regex -i ^([a-z0-9-]+\\.)+example\\.org$" in conf
    for net in ("10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "203.0.113.0/24"):
        assert f"acl blocked dst {net}" in conf
    rules = [ln for ln in conf.splitlines() if ln.startswith("http_access")]
    assert rules == ["http_access deny !web_ports", "http_access deny CONNECT !tls_port",
                     "http_access deny !granted_names !granted_patterns", "http_access deny blocked",
                     "http_access allow all"]


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
