"""``runner doctor``: check what the runner depends on and what protects the host, one line each.

- ``check``: a line of the report (:class:`Check`) and the guard that turns an exception into a failed line;
- ``services``: the Docker engine DOCKER_HOST names (local or remote), whether it can take the thread
  files where RUNNER_FILES keeps them, its images (and how to load them there), the database (through the
  store) and the Telegram bot;
- ``host``: the data directory, the thread directories, the job uid range and the jobs/ disk limit;
- ``sample``: doctor's sample job (its jobs/ and its run spec, made as a real thread's and run's);
- ``containers``: the checks on sample containers (hardening, ids, jobs/ file system, egress);
- ``probes``: what runs those sample containers and the probes inside them.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker

from ..settings import Settings
from . import containers, host, probes, services
from .check import Check, safe
from .containers import egress_isolation, egress_proxy
from .host import jobs_disk_limit
from .sample import sample_dir, sample_spec
from .services import MIN_ENGINE, engine_too_old


def run_checks(settings: Settings, *, hardening: bool = True) -> Iterator[Check]:
    """Yield each check as it completes (the slow container checks last, if ``hardening``)."""
    found: list[docker.DockerClient] = []
    yield safe("Docker engine", lambda: services.engine(found))
    dc = found[0] if found else None
    files = safe("file store", lambda: services.file_store(settings, dc))
    yield files
    yield safe("job image", lambda: services.image(dc, settings.image, "job image", "run make image"))
    yield safe("egress proxy image", lambda: services.egress_image(dc, settings.egress_image))
    yield safe("database", lambda: services.database(settings))
    yield safe("data directory", lambda: host.data_dir(settings.data_dir))
    yield safe("thread directories", lambda: host.thread_dirs(settings.data_dir))
    yield safe("job uid range", lambda: host.uid_range(settings.uid_range))
    yield safe("jobs/ disk limit", lambda: jobs_disk_limit(settings))
    yield safe("Telegram bot", lambda: services.bot(settings))
    if hardening and dc is not None and files.ok:  # the sample containers mount the files as runs do
        engine = dc
        yield from containers.hardening(settings, engine)
        yield safe("egress proxy", lambda: egress_proxy(settings, engine))
        yield safe("granted job isolation", lambda: egress_isolation(settings, engine))


__all__ = ["MIN_ENGINE", "Check", "containers", "egress_isolation", "egress_proxy", "engine_too_old",
           "jobs_disk_limit", "probes", "run_checks", "sample_dir", "sample_spec"]
