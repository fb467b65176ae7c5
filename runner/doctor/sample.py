"""Doctor's sample job: a jobs/ directory and a run spec made exactly as a real thread's and run's, as the
range's last uid, which no thread gets."""

from __future__ import annotations

from pathlib import Path

from .. import jobsquota
from ..runspec import SAMPLE_THREAD, run_spec, sample_job
from ..sandbox import RunSpec
from ..settings import Settings
from ..threads import prepare_jobs_dir, sample_uid


def sample_dir(settings: Settings) -> Path:
    """The sample job's jobs/ directory, prepared as a real thread's (the range's reserved last uid)."""
    return prepare_jobs_dir(settings.data_dir, SAMPLE_THREAD, sample_uid(settings.uid_range),
                            jobsquota.from_settings(settings))


def sample_spec(settings: Settings, jobs_dir: Path, **job: object) -> RunSpec:
    """The run a job of this runner would get (the one builder of real runs' specs, with a sample job), for
    doctor's sample containers, as the range's last uid, which no thread gets."""
    uid = sample_uid(settings.uid_range)
    return run_spec(settings, sample_job(settings, **job), owner=settings.runner_id, jobs_dir=jobs_dir,
                    user=f"{uid}:{uid}")
