"""Doctor's sample job: a jobs/ directory and a run spec made exactly as a real thread's and run's, as the
range's last uid, which no thread gets. With RUNNER_FILES=postgres there is no directory: the sample, as a
copied run, gets a volume of its own, with an empty jobs/ copied in (:func:`fill`), so that doctor checks
an engine on another host the way runs use it."""

from __future__ import annotations

from pathlib import Path

from .. import jobsquota, sandbox, tarstream
from ..runspec import SAMPLE_THREAD, run_spec, sample_job
from ..sandbox import RunSpec
from ..settings import Settings
from ..threads import prepare_jobs_dir, sample_uid


def sample_dir(settings: Settings) -> Path:
    """The sample job's jobs/ directory, prepared as a real thread's (the range's reserved last uid)."""
    return prepare_jobs_dir(settings.data_dir, SAMPLE_THREAD, sample_uid(settings.uid_range),
                            jobsquota.from_settings(settings))


def sample_jobs(settings: Settings) -> Path | None:
    """What the sample's jobs/ is: :func:`sample_dir`, or None when runs get a volume of their own."""
    return None if settings.files == "postgres" else sample_dir(settings)


def sample_spec(settings: Settings, jobs_dir: Path | None, **job: object) -> RunSpec:
    """The run a job of this runner would get (the one builder of real runs' specs, with a sample job), for
    doctor's sample containers, as the range's last uid, which no thread gets. With RUNNER_FILES=postgres
    its jobs/ is a volume of its own whatever ``jobs_dir`` says, as a copied run's is."""
    uid = sample_uid(settings.uid_range)
    return run_spec(settings, sample_job(settings, **job), owner=settings.runner_id,
                    jobs_dir=None if settings.files == "postgres" else jobs_dir, user=f"{uid}:{uid}")


def fill(container: object, spec: RunSpec) -> None:
    """Before the start: a copied run's (``spec.jobs_dir`` None) empty jobs/, owned by the sample's uid,
    copied into the created container as the runner copies a thread's files in."""
    if spec.jobs_dir is None:
        uid = int(spec.user.split(":")[0])
        sandbox.put_jobs(container, tarstream.pack({}, uid, uid))
