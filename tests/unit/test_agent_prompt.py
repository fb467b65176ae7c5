"""The agent's system prompt states the limits in force on this runner, not the defaults it was written with."""

from __future__ import annotations

import re

import pytest

from runner.agent import system_prompt, tool_definitions
from runner.cli import main
from runner.settings import Settings


def test_the_prompt_states_this_runners_limits() -> None:
    s = Settings(timeout_seconds=45, max_timeout_seconds=120, memory_mb=512, max_memory_mb=1024, cpus=0.5,
                 pids_limit=32, disk_mb=80, message_cap=16 * 1024, max_attachments=3, attachment_cap=5 * 1024 * 1024,
                 attachments_total_cap=8 * 1024 * 1024)
    prompt = system_prompt(s)
    for said in ("45 s of wall time", "512 MiB of memory", "0.5 CPU", "32 processes", "80 MiB in jobs/",
                 "up to 120 s and\n  1024 MiB", "at most 16 KiB", "at most 3 files, 5 MiB each, 8 MiB in all"):
        assert said in prompt, said
    for default in ("30 s", "256 MiB", "64 processes", "64 KiB", "10 MiB"):
        assert default not in prompt, default


def test_the_default_prompt_states_the_defaults() -> None:
    prompt = system_prompt(Settings())
    assert "30 s of wall time, 256 MiB of memory, 1 CPU, 64 processes, 50 MiB in jobs/" in prompt
    assert "at most 64 KiB" in prompt and "at most 10 files, 10 MiB each, 20 MiB in all" in prompt
    assert "{" not in prompt.replace('["api.example.com"]', "")  # every placeholder filled


def test_the_prompt_states_the_network_the_operator_allows() -> None:
    assert "No network unless you grant host names with allow_hosts" in system_prompt(Settings())
    narrow = system_prompt(Settings(egress_allow=("api.example.com", "*.weather.example")))
    assert "grants only names within: api.example.com, *.weather.example" in narrow
    closed = system_prompt(Settings(egress_allow=()))
    assert "No network: this runner grants no host names" in closed and "through a proxy" not in closed


def test_an_odd_size_is_stated_in_bytes() -> None:
    assert "at most 1500 bytes" in system_prompt(Settings(message_cap=1500))


def test_tool_definitions_state_no_limit_as_a_constant() -> None:
    for tool in tool_definitions():
        for prop in tool["input_schema"]["properties"].values():
            assert not re.search(r"default \(\d+\)", prop["description"]), prop["description"]


def test_runner_tools_prompt_states_the_limits_set_in_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RUNNER_TIMEOUT", "45")
    monkeypatch.setenv("RUNNER_MEMORY_MB", "300")
    assert main(["tools", "--prompt"]) == 0
    assert "Limits: 45 s of wall time, 300 MiB of memory" in capsys.readouterr().out


def test_the_mcp_prompt_names_exactly_the_mcp_tools() -> None:
    """Over MCP the prompt names the MCP server's tools, and no function-calling tool it does not have."""
    import re

    from runner.agent import MCP_TOOLS
    from runner.mcp.describe import prompt
    from runner.mcp.tools import NAMES
    from runner.settings import Settings

    text = prompt(Settings.from_env({"RUNNER_ID": "x"}))
    assert set(MCP_TOOLS) == set(NAMES)
    named = set(re.findall(r"\b(?:get|list|schedule|run|pause|resume|update|cancel|preview|read|write|approve)_[a-z_]+\b", text))
    assert named <= set(NAMES) and "get_job_logs" not in text and "approve_script" not in text, named
