"""The attack suite runs twice where gVisor is registered with the engine: under the default runtime
(runc) and under runsc. Where runsc is missing, its half is reported as skipped, never as passed."""

from __future__ import annotations

import docker
import pytest

from runner.settings import Settings

RUNTIMES = ("runc", "runsc")


@pytest.fixture(scope="session")
def registered_runtimes(docker_client: docker.DockerClient) -> frozenset[str]:
    return frozenset(docker_client.info().get("Runtimes") or {})


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest, registered_runtimes: frozenset[str]) -> str:
    """The container runtime of this test's job containers."""
    name: str = request.param
    marker = request.node.get_closest_marker("runtimes")
    if marker is not None and name not in marker.args:
        pytest.skip(f"{request.node.originalname} runs under {', '.join(marker.args)} only: {marker.kwargs['why']}")
    if name not in registered_runtimes:
        pytest.skip(f"the {name} runtime is not registered with Docker (run: make gvisor)")
    return name


@pytest.fixture
def settings(settings: Settings, runtime: str) -> Settings:
    """The shared settings, with this test's runtime (None: the engine's default, runc)."""
    return settings.with_(container_runtime=None if runtime == "runc" else runtime)
