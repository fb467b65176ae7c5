"""The remote mode's arguments: where the URL and the token come from, what is refused before any
request (and how, without echoing a secret), which commands stay local, and that the token never
reaches an error or a log line. Against a runner itself: tests/integration/test_cli_remote.py."""

from __future__ import annotations

import argparse
import io
import logging
import sys

import pytest

from runner.cli import build_parser, main
from runner.cli import files as file_commands
from runner.cli import remote as remote_mode
from runner.errors import ConfigError
from runner.logsetup import RedactingFilter

TOKEN = "rnr_0123456789abcdef_" + "S" * 43


@pytest.fixture(autouse=True)
def _no_remote_in_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNNER_URL", "RUNNER_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args([*argv, "jobs"])


def test_no_url_is_the_local_mode_even_with_a_token_in_the_environment() -> None:
    assert remote_mode.remote_of(_args(), {}) is None
    assert remote_mode.remote_of(_args(), {"RUNNER_TOKEN": TOKEN, "RUNNER_URL": ""}) is None


def test_the_environment_gives_the_url_and_the_token_and_the_options_win() -> None:
    got = remote_mode.remote_of(_args(), {"RUNNER_URL": "https://runner.example/base/", "RUNNER_TOKEN": TOKEN})
    assert got is not None
    assert (got.url, got.token, got.token_from, got.url_from) == ("https://runner.example/base", TOKEN,
                                                                  "RUNNER_TOKEN", "RUNNER_URL")
    assert TOKEN not in repr(got)
    other = "rnr_fedcba9876543210_" + "T" * 43
    got = remote_mode.remote_of(_args("--url", "http://127.0.0.1:8080", "--token", other),
                                {"RUNNER_URL": "https://runner.example", "RUNNER_TOKEN": TOKEN})
    assert got is not None and (got.url, got.token, got.token_from, got.url_from) == (
        "http://127.0.0.1:8080", other, "--token", "--url")


@pytest.mark.parametrize(("argv", "env", "said"), [
    (("--token", TOKEN), {}, "--token is for a remote runner: give its address too"),
    ((), {"RUNNER_URL": "https://runner.example"}, "needs a token: set RUNNER_TOKEN (better than --token"),
    ((), {"RUNNER_URL": "runner.example:8080", "RUNNER_TOKEN": TOKEN}, "is not the address of a runner"),
    ((), {"RUNNER_URL": "ftp://runner.example", "RUNNER_TOKEN": TOKEN}, "give it as https://host[:port]"),
    ((), {"RUNNER_URL": "http://", "RUNNER_TOKEN": TOKEN}, "RUNNER_URL 'http://' is not the address"),
    ((), {"RUNNER_URL": "http://h:port/", "RUNNER_TOKEN": TOKEN}, "is not the address of a runner"),
    ((), {"RUNNER_URL": "http://h/?x=1", "RUNNER_TOKEN": TOKEN}, "is not the address of a runner"),
    (("--url", "http://[::1"), {"RUNNER_TOKEN": TOKEN}, "--url 'http://[::1' is not the address of a runner"),
])
def test_what_is_refused_before_any_request(argv: tuple[str, ...], env: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        remote_mode.remote_of(_args(*argv), env)
    assert said in str(refused.value)


@pytest.mark.parametrize("bad", [TOKEN + "\n", f"Bearer {TOKEN}", TOKEN[:-1], "s3cr3t-pasted-wrong"])
def test_a_malformed_token_is_refused_without_being_echoed(bad: str) -> None:
    with pytest.raises(ConfigError) as refused:
        remote_mode.remote_of(_args(), {"RUNNER_URL": "https://runner.example", "RUNNER_TOKEN": bad})
    assert "the token given by RUNNER_TOKEN is not a runner token" in str(refused.value)
    assert bad.strip() not in str(refused.value) and "s3cr3t" not in str(refused.value)


def test_a_url_with_a_password_is_refused_without_being_echoed() -> None:
    with pytest.raises(ConfigError) as refused:
        remote_mode.remote_of(_args(), {"RUNNER_URL": "https://me:hunter2@runner.example", "RUNNER_TOKEN": TOKEN})
    assert "the URL given by RUNNER_URL holds a user name or password" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_global_url_is_not_the_health_commands_address() -> None:
    args = build_parser().parse_args(["--url", "https://runner.example", "health", "--url", "127.0.0.1:8080"])
    assert (args.remote_url, args.url) == ("https://runner.example", "127.0.0.1:8080")


def test_schedule_and_files_need_a_thread_locally_only(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["schedule", "x.py", "--name", "x"], ["files", "ls"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
        assert "required: --thread (or, with --url, a thread's token)" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["up"], ["migrate"], ["doctor"], ["image", "build"], ["token", "list"]])
def test_the_local_commands_say_they_need_the_database(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RUNNER_TOKEN", TOKEN)
    assert main(["--url", "https://runner.example", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"runner: `{argv[0]}` ") and "it needs the database, not a URL; run it on the " \
        "runner's host without --url" in err
    monkeypatch.setenv("RUNNER_URL", "https://runner.example")
    assert main(argv) == 1 and "without RUNNER_URL" in capsys.readouterr().err


def test_a_runner_that_does_not_answer_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RUNNER_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("RUNNER_TOKEN", TOKEN)
    assert main(["jobs"]) == 1
    out = capsys.readouterr()
    assert out.err.startswith("runner: could not reach the runner at http://127.0.0.1:1: ")
    assert len(out.err.splitlines()) == 1 and TOKEN not in out.err + out.out


def test_the_commands_with_nothing_remote_run_as_they_do_locally(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RUNNER_URL", "http://127.0.0.1:1")  # never asked
    monkeypatch.setenv("RUNNER_TOKEN", TOKEN)
    assert main(["tools", "--prompt"]) == 0
    assert capsys.readouterr().out.strip()


def test_the_token_never_reaches_an_error_or_a_log_line(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    def leaky(args: argparse.Namespace, remote: remote_mode.Remote, settings: object) -> int:
        logging.getLogger("some.library").warning("sending Authorization: Bearer %s", remote.token)
        raise RuntimeError(f"a bug that shows its header: Bearer {remote.token}")

    monkeypatch.setattr(remote_mode, "run", leaky)
    monkeypatch.setenv("RUNNER_TOKEN", TOKEN)
    monkeypatch.setenv("RUNNER_LOG_LEVEL", "DEBUG")  # the bug's traceback is logged too
    try:
        assert main(["--url", "https://runner.example", "jobs"]) == 1
    finally:
        for handler in logging.getLogger().handlers:  # the filter main added for this token
            for f in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
                handler.removeFilter(f)
    err = capsys.readouterr().err
    assert TOKEN not in err
    assert "sending Authorization: Bearer <token>" in err
    assert "runner: unexpected error: RuntimeError: a bug that shows its header: Bearer <token>" in err
    assert "Traceback (most recent call last)" in err and "in leaky" in err


class _Files:
    """A thread's jobs/ holding one file a job wrote."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_file(self, name: str) -> bytes:
        return self.data


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cat_shows_a_jobs_control_characters_on_a_terminal_and_the_bytes_to_a_pipe(
        monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    hostile = b"ok\x1b]0;pwned\x07\x1b[2J\n"
    args = argparse.Namespace(name="out.txt", files_command="cat")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert file_commands.remote(args, _Files(hostile)) == 0
    assert "\x1b" not in terminal.getvalue() and "\x07" not in terminal.getvalue()
    assert terminal.getvalue().startswith("ok") and "pwned" in terminal.getvalue()
    monkeypatch.undo()
    assert file_commands.remote(args, _Files(hostile)) == 0
    assert capfdbinary.readouterr().out == hostile
