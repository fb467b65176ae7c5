"""One builder of a run's spec: the scheduler's runs and doctor's sample containers get the same limits."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from runner import doctor
from runner.settings import Settings

# Every setting a run's spec takes from the runner, each away from its default so a copy that forgets one
# (doctor's did: tmpfs_inodes and output_cap) shows.
SETTINGS = Settings(
    image="img:1", timeout_seconds=41, memory_mb=300, cpus=0.75, pids_limit=55, tmpfs_mb=3, tmpfs_inodes=77,
    nofile=99, max_file_mb=7, output_cap=1234, container_runtime="runc-x", egress_image="egress:9",
    egress_network="outer-net", egress_block=("10.9.0.0/16",), egress_hosts=("api.example.com=192.0.2.7",),
    egress_allow_addresses=("192.0.2.8",), runner_id="runner-a", uid_range=(50_000, 50_099),
)


def test_doctor_samples_a_container_under_every_limit_a_real_run_gets(tmp_path: Path) -> None:
    spec = doctor.sample_spec(SETTINGS, tmp_path)
    got = {f: getattr(spec, f) for f in (
        "image", "memory_mb", "cpus", "pids_limit", "tmpfs_mb", "tmpfs_inodes", "nofile", "max_file_mb",
        "output_cap", "runtime", "egress_image", "egress_network", "egress_blocked", "egress_hosts",
        "egress_allowed")}
    assert got == {
        "image": "img:1", "memory_mb": 300, "cpus": 0.75, "pids_limit": 55, "tmpfs_mb": 3, "tmpfs_inodes": 77,
        "nofile": 99, "max_file_mb": 7, "output_cap": 1234, "runtime": "runc-x", "egress_image": "egress:9",
        "egress_network": "outer-net", "egress_blocked": ("10.9.0.0/16",),
        "egress_hosts": ("api.example.com=192.0.2.7",), "egress_allowed": ("192.0.2.8",),
    }
    assert (spec.job_id, spec.thread_id, spec.user, spec.jobs_dir) == (0, "doctor:0", "50099:50099", tmp_path)
    assert spec.start_at is None and spec.allow_hosts == ()
    granted = doctor.sample_spec(SETTINGS, tmp_path, allow_hosts=("example.com",))
    assert granted.allow_hosts == ("example.com",)


def test_a_job_row_and_the_settings_make_the_spec_a_run_gets(tmp_path: Path) -> None:
    from runner.runspec import run_spec, sample_job

    due = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    job = {"id": 7, "thread_id": "telegram:5", "script_path": "/data/telegram_5/jobs/check.py",
           "timeout_seconds": 12, "memory_mb": 128, "cpus": 0.5, "pids_limit": 32,
           "allow_hosts": ["api.example.com"], "due_time": due}
    spec = run_spec(SETTINGS, job, owner="runner-a", jobs_dir=tmp_path, user="50001:50001", keep=True)
    assert (spec.job_id, spec.thread_id, spec.script, spec.start_at, spec.keep) == (7, "telegram:5", "check.py", due, True)
    assert (spec.timeout_seconds, spec.memory_mb, spec.cpus, spec.pids_limit) == (12, 128, 0.5, 32)  # the job's
    assert spec.allow_hosts == ("api.example.com",)
    # Everything else is the runner's, exactly as doctor's sample gets it.
    sample = run_spec(SETTINGS, sample_job(SETTINGS), owner="runner-a", jobs_dir=tmp_path, user="50001:50001")
    per_job = ("job_id", "thread_id", "script", "timeout_seconds", "memory_mb", "cpus", "pids_limit", "allow_hosts",
               "start_at", "keep")
    same = {f.name for f in dataclasses.fields(spec)} - set(per_job)
    assert {f: getattr(spec, f) for f in same} == {f: getattr(sample, f) for f in same}
    assert (sample.timeout_seconds, sample.memory_mb, sample.cpus, sample.pids_limit) == (41, 300, 0.75, 55)
