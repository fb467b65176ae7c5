"""The attack suite: hostile job scripts against the real engine and a real database.

Each test asserts that the attack failed, that the run records the right reason, and that the
runner keeps working afterwards (a harmless job in the same thread still runs).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from runner.service import Jobs, Limits
from runner.settings import Settings
from runner.store import Database
from runner.threads import jobs_dir

from .helpers import Attack, attacks

THREAD = "telegram:666"
OTHER = "telegram:777"


@pytest.fixture
def attack(jobs: Jobs, settings: Settings, db: Database, docker_client: docker.DockerClient) -> Iterator[Attack]:
    """Run a hostile script once; return (row, console output). Then check the runner still works."""
    yield from attacks(Attack(jobs, settings, db, docker_client, THREAD), no_watchdog_left=False)


# Under gVisor a fork bomb's copies are the sandbox kernel's tasks, and what stops them first is the
# memory they cost the sandbox (or the host threads they need): either is named from the engine's facts.
GVISOR_BOMB_REASONS = ("killed: memory limit 256 MiB exceeded", "process limit 64 reached")


def test_fork_bomb(attack, runtime: str) -> None:
    row, _ = attack("import os\nwhile True:\n    os.fork()\n", limits=Limits(timeout_seconds=10))
    assert row["status"] == "failed"
    error = row["error_message"]
    if runtime == "runsc":
        # Or gVisor's own RLIMIT_NPROC refused the forks first: the job's words, never a guessed limit.
        assert error.startswith((*GVISOR_BOMB_REASONS, "exit code 1")), error
    else:
        # The limit is named only when the pids cgroup said so while the job ran (the cgroup goes with the
        # container); a bomb that dies faster is reported in its own words, never as a limit guessed from
        # its "[Errno 11]" (tests/security/test_reasons.py).
        assert error == "process limit 64 reached" or error.startswith("exit code 1"), error


def test_fork_bomb_that_swallows_errors_is_stopped_by_the_timeout(attack, runtime: str) -> None:
    script = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    row, _ = attack(script, limits=Limits(timeout_seconds=4))
    assert row["status"] == "failed"
    reasons = ("timed out after 4 s", *GVISOR_BOMB_REASONS) if runtime == "runsc" else ("timed out after 4 s",)
    assert row["error_message"].startswith(reasons), row["error_message"]


def test_memory_bomb(attack) -> None:
    row, _ = attack("x = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))\n", limits=Limits(memory_mb=64))
    assert row["status"] == "failed"
    assert row["error_message"].startswith("killed: memory limit 64 MiB exceeded")


def test_cpu_spin_past_the_timeout(attack) -> None:
    row, _ = attack("while True:\n    pass\n", limits=Limits(timeout_seconds=3))
    assert row["status"] == "failed" and row["error_message"] == "timed out after 3 s"
    assert row["duration_ms"] < 15000


def test_child_ignoring_sigterm_dies_with_the_job(attack, docker_client: docker.DockerClient) -> None:
    marker = f"outlive-{uuid.uuid4().hex[:8]}"
    script = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"time.sleep(300)  # {marker}'], start_new_session=True)\n"
        "print('parent exits')\n"
    )
    row, _ = attack(script)
    assert row["status"] == "completed", row["error_message"]
    assert row["duration_ms"] < 10000
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert marker not in ps, "a child outlived its job"


def test_disk_fill_in_jobs_dir(attack, settings: Settings) -> None:
    script = ("import os\nfor i in range(100):\n    with open(f'jobs/fill{i}.bin', 'wb') as f:\n"
              "        f.write(os.urandom(5 * 1024 * 1024))\n")
    row, _ = attack(script, s=settings.with_(disk_mb=20))
    assert row["status"] == "failed"
    assert row["error_message"].startswith("disk limit 20 MiB exceeded in jobs/ (largest: fill")
    used = sum(p.stat().st_size for p in jobs_dir(settings.data_dir, THREAD).glob("fill*.bin"))
    assert used < 200 * 1024 * 1024
    for p in jobs_dir(settings.data_dir, THREAD).glob("fill*.bin"):
        p.unlink()  # the user's cleanup, so the runner check after the attack starts from a sane dir


def test_disk_fill_in_tmp(attack) -> None:
    row, _ = attack("with open('/tmp/fill', 'wb') as f:\n    while True:\n        f.write(b'x' * 1024 * 1024)\n")
    assert row["status"] == "failed"
    # No kernel fact about a container's tmpfs outlives it: the job's own ENOSPC is quoted.
    assert row["error_message"] == "exit code 1: OSError: [Errno 28] No space left on device"


def test_millions_of_small_files(attack, settings: Settings) -> None:
    script = "import os\nos.mkdir('jobs/many')\nfor i in range(1_000_000):\n    open(f'jobs/many/{i}', 'w').close()\n"
    try:
        row, _ = attack(script, s=settings.with_(max_files=2000), limits=Limits(timeout_seconds=60))
    finally:  # the thread stays over its limit otherwise, and its later jobs fail too
        subprocess.run(["rm", "-rf", str(jobs_dir(settings.data_dir, THREAD) / "many")], check=True)
    assert row["status"] == "failed"
    # How far past the limit the job got depends on when the walk came round (one every 0.25-2 s).
    assert row["error_message"].startswith("file count limit 2000 exceeded in jobs/ (most: many/ "), row["error_message"]


def test_small_files_in_tmp_hit_the_inode_limit(attack, runtime: str) -> None:
    row, _ = attack("i = 0\nwhile True:\n    open(f'/tmp/{i}', 'w').close()\n    i += 1\n",
                    limits=Limits(timeout_seconds=5))
    assert row["status"] == "failed"
    if runtime == "runsc":
        # gVisor's own tmpfs has no inode count: empty files cost the sandbox's memory, and the time limit
        # (or the memory limit) ends the job.
        assert row["error_message"].startswith(("timed out after 5 s", "killed: memory limit")), row["error_message"]
    else:
        assert row["error_message"].startswith("exit code 1: OSError: [Errno 28] No space left on device")


def test_largest_file(attack, settings: Settings) -> None:
    row, _ = attack("with open('/tmp/big', 'wb') as f:\n    f.write(b'x' * (8 * 1024 * 1024))\n",
                    s=settings.with_(max_file_mb=4))
    assert row["status"] == "failed" and row["error_message"] == "exit code 1: OSError: [Errno 27] File too large"


def test_output_flood_is_truncated(attack) -> None:
    # 20 MB of writes: gVisor takes several times longer than runc for them, so the time limit is generous.
    row, _ = attack("import sys\nfor _ in range(200000):\n    sys.stdout.write('y' * 100 + '\\n')\n",
                    limits=Limits(timeout_seconds=90))
    assert row["status"] == "completed", row["error_message"]
    assert row["error_message"] == "output truncated at 64 KiB"
    assert row["output_tail"] is not None and len(row["output_tail"].encode()) <= 64 * 1024


def test_message_symlink_to_etc_shadow(attack) -> None:
    row, printed = attack("import os\nos.symlink('/etc/shadow', 'jobs/attack1_message.txt')\n")
    assert row["status"] == "failed"
    assert row["error_message"] == "message file refused: attack1_message.txt is a symbolic link; it was not followed"
    assert "--- message for" not in printed and "root:" not in printed  # only the failure notice


def test_message_symlink_to_another_threads_file(attack, settings: Settings) -> None:
    other = jobs_dir(settings.data_dir, OTHER)
    other.mkdir(parents=True)
    (other / "secret_message.txt").write_text("another user's secret")
    row, printed = attack(f"import os\nos.symlink({str(other / 'secret_message.txt')!r}, 'jobs/attack1_message.txt')\n")
    assert row["status"] == "failed" and "symbolic link" in row["error_message"]
    assert "secret" not in printed
    assert (other / "secret_message.txt").read_text() == "another user's secret"


def test_message_hard_link_and_fifo(attack, settings: Settings, runtime: str) -> None:
    row, printed = attack("import os\nopen('jobs/x.txt', 'w').write('hi')\nos.link('jobs/x.txt', 'jobs/attack1_message.txt')\n"
                          "os.mkfifo('jobs/attack1_output.json')\n")
    assert row["status"] == "failed" and "hard links" in row["error_message"] and "--- message for" not in printed
    row, printed = attack("import os\nos.mkfifo('jobs/attack2_message.txt')\n")
    if runtime == "runsc":
        # gVisor keeps a FIFO made on a host directory inside the sandbox: the host never sees one.
        assert row["status"] == "completed" and "--- message for" not in printed, row["error_message"]
    else:
        assert row["status"] == "failed" and "not a regular file" in row["error_message"]
    assert not os.path.lexists(jobs_dir(settings.data_dir, THREAD) / "attack2_message.txt")


def test_huge_message_is_capped(attack) -> None:
    script = ("with open('jobs/attack1_message.txt', 'w') as f:\n"
              "    for _ in range(40):\n        f.write('z' * 1024 * 1024)\n")
    row, printed = attack(script)
    assert row["status"] == "completed", row["error_message"]
    assert "[message truncated at 64 KiB]" in printed
    assert len(printed) < 70 * 1024


def test_invalid_utf8_message(attack) -> None:
    row, printed = attack("open('jobs/attack1_message.txt', 'wb').write(b'price \\xff\\xfe ok')\n")
    assert row["status"] == "completed" and "price \ufffd\ufffd ok" in printed


def test_secrets_do_not_reach_the_job(attack, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    for var in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "HTTP_PROXY", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, f"{var}-{secret}")
    script = ("import os, glob\nprint(dict(os.environ))\n"
              "for p in ['/proc/self/environ', '/proc/1/environ', '/proc/1/cmdline'] + glob.glob('/proc/*/environ'):\n"
              "    try:\n        print(p, open(p, 'rb').read())\n    except OSError as e:\n        print(p, e)\n")
    row, _ = attack(script)
    assert row["status"] == "completed"
    assert secret not in row["output_tail"]
    assert "TELEGRAM" not in row["output_tail"] and "DATABASE_URL" not in row["output_tail"]


@pytest.mark.parametrize("target", ["('1.1.1.1', 53)", "('8.8.8.8', 443)", "('example.com', 80)",
                                    "('169.254.169.254', 80)", "('172.17.0.1', 2375)"])
def test_no_network_without_a_grant(attack, target: str) -> None:
    script = (f"import socket\ns = socket.socket()\ns.settimeout(3)\ntry:\n    s.connect({target})\n"
              "    print('CONNECTED')\nexcept OSError as e:\n    print('refused', e)\n"
              "print(open('/proc/net/dev').read())\n")
    row, _ = attack(script)
    assert row["status"] == "completed"
    assert "CONNECTED" not in row["output_tail"] and "refused" in row["output_tail"]
    assert "eth0" not in row["output_tail"], "a job without a grant has only the loopback interface"


def test_cannot_write_to_the_image(attack) -> None:
    script = ("import os\nfor p in ['/etc/passwd', '/usr/bin/python3', '/work/x', '/root/x', '/bin/sh']:\n"
              "    try:\n        open(p, 'a').write('x')\n        print('WROTE', p)\n"
              "    except OSError as e:\n        print('no', p, e.errno)\n")
    row, _ = attack(script)
    assert row["status"] == "completed" and "WROTE" not in row["output_tail"]


def test_cannot_escape_the_thread_directory(attack, settings: Settings) -> None:
    other = jobs_dir(settings.data_dir, OTHER)
    other.mkdir(parents=True)
    (other / "secret.txt").write_text("other thread")
    script = (
        "import os\n"
        "for p in ['jobs/../../telegram_777/jobs/secret.txt', '/work/jobs/../../../telegram_777/jobs/secret.txt',\n"
        f"          {str(other / 'secret.txt')!r}, '../telegram_777/jobs/secret.txt']:\n"
        "    try:\n        print('READ', open(p).read())\n    except OSError as e:\n        print('no', e.errno)\n"
        "print(sorted(os.listdir('/work')), sorted(os.listdir('/')))\n"
        "try:\n    os.symlink('/', 'jobs/root')\nexcept OSError as e:\n    print('symlink', e)\n"
    )
    row, _ = attack(script)
    assert row["status"] == "completed", row["error_message"]
    assert "READ" not in row["output_tail"] and "other thread" not in row["output_tail"]
    # A symlink the job leaves behind points into the container's namespace; the host never follows it.
    assert (other / "secret.txt").read_text() == "other thread"


def test_no_setuid_escalation(attack, runtime: str) -> None:
    script = (
        "import os, subprocess\n"
        "found = []\n"
        "for root, dirs, files in os.walk('/'):\n"
        "    if root.startswith(('/proc', '/sys')):\n        dirs[:] = []\n        continue\n"
        "    for f in files:\n        p = os.path.join(root, f)\n"
        "        try:\n            st = os.lstat(p)\n        except OSError:\n            continue\n"
        "        if st.st_mode & 0o6000:\n            found.append(p)\n"
        "print('SETUID', found)\n"
        "print('uid', os.getuid(), os.geteuid())\n"
        "try:\n    os.setuid(0)\n    print('BECAME ROOT')\nexcept OSError as e:\n    print('setuid refused', e.errno)\n"
        "print(open('/proc/self/status').read())\n"
    )
    row, _ = attack(script)
    assert row["status"] == "completed", row["error_message"]
    out = row["output_tail"]
    assert "SETUID []" in out and "BECAME ROOT" not in out and "uid 0" not in out
    assert "CapEff:\t0000000000000000" in out and "CapBnd:\t0000000000000000" in out
    if runtime != "runsc":  # gVisor's /proc shows its own kernel's view; the host applies both to the sandbox
        assert "NoNewPrivs:\t1" in out
        assert "Seccomp:\t2" in out


def test_no_docker_socket(attack) -> None:
    script = ("import os, socket\nfor p in ['/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock']:\n"
              "    print(p, os.path.exists(p))\n"
              "s = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('/var/run/docker.sock')\n    print('CONNECTED')\n"
              "except OSError as e:\n    print('refused', e.errno)\n")
    row, _ = attack(script)
    assert "CONNECTED" not in row["output_tail"] and " True" not in row["output_tail"]


def test_too_many_open_files(attack) -> None:
    row, _ = attack("fs = []\nwhile True:\n    fs.append(open('/dev/null'))\n")
    assert row["status"] == "failed"
    assert row["error_message"] == "exit code 1: OSError: [Errno 24] Too many open files: '/dev/null'"


def test_script_cannot_touch_other_threads_files_by_replacing_its_own_jobs_dir(attack, settings: Settings) -> None:
    script = "import os, shutil\ntry:\n    os.rmdir('/work/jobs')\nexcept OSError as e:\n    print('rmdir', e.errno)\n"
    row, _ = attack(script)
    assert row["status"] == "completed"
    assert Path(jobs_dir(settings.data_dir, THREAD)).is_dir()
