"""Building the images the runner uses, with or without a container registry.

Where a registry is reachable, the job image builds ``FROM python:3.12-slim``. Where none is (as on an
offline server), a Debian base is bootstrapped with ``mmdebstrap`` (minbase + python3), imported with
``docker import``, and the same Dockerfile builds on it: the base is a build argument.

This is build tooling, so it drives the ``docker`` command line (builds need the host's network to
reach the package mirrors: ``--network host``).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from .errors import RunnerError
from .settings import PROJECT_ROOT

log = logging.getLogger(__name__)

REGISTRY_BASE = "python:3.12-slim"
LOCAL_BASE = "runner-debian:bookworm"
POSTGRES_IMAGE = "runner-postgres:15"
SUITE = "bookworm"


def _docker(*args: str, check: bool = True, quiet: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker") is None:
        raise RunnerError("the docker command is not installed: install Docker Engine first")
    out = subprocess.PIPE if quiet else None
    proc = subprocess.run(["docker", *args], text=True, stdout=out, stderr=out, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise RunnerError(f"docker {args[0]} failed" + (f": {detail[0]}" if detail else ""))
    return proc


def image_exists(tag: str) -> bool:
    """True if the local engine has ``tag``."""
    return _docker("image", "inspect", tag, check=False, quiet=True).returncode == 0


def registry_base_available(base: str = REGISTRY_BASE) -> bool:
    """True if ``base`` is present or can be pulled (fails fast where no registry resolves)."""
    if image_exists(base):
        return True
    try:
        return _docker("pull", "-q", base, check=False, quiet=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def bootstrap_debian_base(tag: str = LOCAL_BASE, *, force: bool = False) -> str:
    """Create ``tag`` from Debian packages with mmdebstrap (minbase + python3) unless it exists."""
    if image_exists(tag) and not force:
        return tag
    if shutil.which("mmdebstrap") is None:
        raise RunnerError(
            "no container registry is reachable and mmdebstrap is not installed: "
            "install it (apt-get install mmdebstrap) or make python:3.12-slim available"
        )
    log.info("bootstrapping %s with mmdebstrap (about a minute)", tag)
    hook = Path("/usr/share/mmdebstrap/hooks/merged-usr")
    cmd = ["mmdebstrap", "--variant=minbase", "--include=python3,ca-certificates", "--quiet"]
    if hook.is_dir():
        cmd.append(f"--hook-dir={hook}")
    if os.geteuid() != 0:
        cmd.append("--mode=unshare")
    cmd += [SUITE, "-"]
    mm = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    imp = subprocess.run(["docker", "import", "-c", 'CMD ["python3"]', "-", tag], stdin=mm.stdout,
                         capture_output=True, text=True, check=False)
    assert mm.stdout is not None
    mm.stdout.close()
    if mm.wait() != 0 or imp.returncode != 0:
        raise RunnerError(f"bootstrapping {tag} failed: {imp.stderr.strip() or 'mmdebstrap failed'}")
    return tag


def pick_base(requested: str | None = None) -> str:
    """The base for a build: the one asked for, else python:3.12-slim if reachable, else the local one."""
    if requested:
        if requested == LOCAL_BASE:
            return bootstrap_debian_base()
        return requested
    if registry_base_available():
        return REGISTRY_BASE
    log.info("no registry reachable: building on a local Debian base")
    return bootstrap_debian_base()


def build(context: Path, tag: str, base: str) -> str:
    """``docker build`` ``context`` as ``tag`` with ``--build-arg BASE=base``."""
    log.info("building %s from %s on %s", tag, context, base)
    _docker("build", "--network", "host", "--build-arg", f"BASE={base}", "-t", tag, str(context))
    return tag


def build_sandbox(tag: str, base: str | None = None) -> str:
    """Build the job image."""
    return build(PROJECT_ROOT / "sandbox-image", tag, pick_base(base))


def build_postgres(tag: str = POSTGRES_IMAGE) -> str:
    """Build the Debian-packaged Postgres image (no registry needed)."""
    return build(PROJECT_ROOT / "docker" / "postgres", tag, bootstrap_debian_base())


def build_egress(tag: str = "runner-egress:latest") -> str:
    """Build the egress proxy image (squid from Debian's packages)."""
    return build(PROJECT_ROOT / "docker" / "egress", tag, bootstrap_debian_base())


WHEELHOUSE = PROJECT_ROOT / "docker" / "runner" / "wheels"
BASE_PYTHON = "3.11"  # the python3 of Debian bookworm, the offline base of the runner's image
BASE_GLIBC = 36  # bookworm's glibc 2.36: manylinux wheels up to manylinux_2_36 run there


def fill_wheelhouse(dest: Path = WHEELHOUSE) -> int:
    """Download wheels of the runner's dependencies (and of setuptools, to build it) for the offline
    base's Python and this machine's architecture into ``dest``, whatever Python runs this. The
    runner's Dockerfile installs from them alone when they are there. Returns the number of wheels."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    arch = platform.machine()
    platforms = [f"manylinux_2_{v}_{arch}" for v in range(BASE_GLIBC, 4, -1)]
    platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    abi = "cp" + BASE_PYTHON.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--dest", str(dest),
           "--only-binary=:all:", "--python-version", BASE_PYTHON, "--implementation", "cp",
           "--abi", abi, "--abi", "abi3", "--abi", "none", *[a for p in platforms for a in ("--platform", p)],
           *project["dependencies"], "setuptools>=68", "wheel"]
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise RunnerError(f"could not download the runner's wheels: {last} (is PyPI or a mirror reachable?)")
    return len(list(dest.glob("*.whl")))
