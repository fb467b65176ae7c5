"""The only part of the runner that talks to the Docker engine, one module per concept:

- ``spec``: what a run is (RunSpec, RunResult, LeaseLost) and the labels its containers carry;
- ``lifecycle``: one run, create -> fence -> start at the due time -> wait -> kill if over -> logs ->
  remove (``run``), and the result of a run another runner left (``adopt``);
- ``policy``: the job container's protections (``container_config``) and the refusal of an unsafe one
  (``refuse_unsafe``, ``refuse_unsafe_proxy``);
- ``copying``: a run's own jobs/ volume filled before the start and read back after the exit
  (RUNNER_FILES=postgres: any engine, no shared directory);
- ``command``: the container's command line, from ``launcher.py`` and ``relay.py`` (real Python files
  of this package, run inside the container with ``python3 -c``);
- ``proxy`` and ``hosts``: a granted run's egress proxy, and the engine host's addresses it refuses;
- ``diagnosis``: why a run ended (``failure_reason``), its bounded output, the watch kept on it;
- ``connect``: which engine (``DOCKER_HOST``): the clients, the engine's address, whether it is local;
- ``engine`` and ``uids``: retries, finding and removing what runs left behind by label, and the
  engine's uid registry.

Every public name is re-exported here: ``from runner import sandbox; sandbox.run(spec)``.
"""

from .command import LAUNCHER, RELAY, SOURCE_CHUNK, relay_code, source_arguments
from .connect import (
                     DEFAULT_HOST,
                     EngineClient,
                     client,
                     clients_like,
                     engine_address,
                     engine_environment,
                     engine_is_local,
                     is_default_engine,
                     local_files_problem,
)
from .copying import put_jobs, read_jobs
from .engine import (
                     image_present,
                     kill_container,
                     managed_containers,
                     managed_networks,
                     managed_volumes,
                     remove_container,
                     remove_network,
                     remove_orphan_volumes,
                     remove_volume,
)
from .hosts import host_addresses, host_networks
from .lifecycle import LAUNCH_MARGIN, StartLatency, adopt, remove_kept, run
from .policy import (
                     ALLOWED_ENV,
                     GVISOR_THREAD_HEADROOM,
                     container_config,
                     is_gvisor,
                     refuse_unsafe,
                     refuse_unsafe_proxy,
)
from .proxy import EgressProxy, gvisor_blocks_sockets
from .spec import (
                     JOBS_MOUNT,
                     LABEL_JOB,
                     LABEL_LEASE,
                     LABEL_MANAGED,
                     LABEL_OWNER,
                     LABEL_ROLE,
                     LABEL_STORE,
                     LABEL_THREAD,
                     LABEL_UID,
                     WORKDIR,
                     LeaseLost,
                     NeverStarted,
                     RunResult,
                     RunSpec,
                     labels_for,
)
from .uids import claim_uid, registered_uids, release_uids, uid_volume_name

__all__ = [
    "ALLOWED_ENV", "DEFAULT_HOST", "EngineClient", "clients_like", "engine_address", "engine_environment",
    "engine_is_local", "is_default_engine", "local_files_problem", "GVISOR_THREAD_HEADROOM", "JOBS_MOUNT", "LABEL_JOB", "LABEL_LEASE", "LABEL_MANAGED",
    "LABEL_OWNER", "LABEL_ROLE", "LABEL_STORE", "LABEL_THREAD", "LABEL_UID", "LAUNCHER", "LAUNCH_MARGIN", "RELAY",
    "SOURCE_CHUNK", "WORKDIR", "EgressProxy", "LeaseLost", "NeverStarted", "RunResult", "RunSpec", "StartLatency", "adopt",
    "claim_uid", "client", "container_config", "gvisor_blocks_sockets", "host_addresses", "host_networks",
    "image_present", "is_gvisor", "kill_container", "labels_for", "managed_containers", "managed_networks",
    "managed_volumes", "refuse_unsafe", "refuse_unsafe_proxy", "registered_uids", "relay_code", "release_uids",
    "remove_container", "remove_kept", "remove_network", "remove_orphan_volumes", "remove_volume", "run",
    "put_jobs", "read_jobs", "source_arguments", "uid_volume_name",
]
