# The runner's own image: the scheduler, message delivery and the bot (`runner up`), for compose.yaml.
# Job scripts never run here: the runner asks the Docker engine for a separate, locked-down container
# per run (sandbox-image/).
#
# BASE is python:3.x-slim where a registry is reachable; compose.offline.yaml builds on the Debian
# base that `make images` bootstraps with mmdebstrap. Where PyPI cannot be reached from inside a
# build, `make wheels` fills docker/runner/wheels/ on the host first and pip installs from it alone.
ARG BASE=python:3.12-slim
FROM ${BASE}

# Debian's python3 has no ensurepip; python:3.x-slim has it and needs nothing from apt.
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv

COPY docker/runner/wheels/ /tmp/wheels/
COPY pyproject.toml README.md /tmp/src/
COPY runner /tmp/src/runner
COPY migrations /tmp/src/migrations
# The examples, so the start-up hint (runner schedule examples/check_price.py ...) works in here too.
COPY examples /opt/runner/examples
# A wheel, installed as a user would install it (not editable): the migrations it applies are the
# package data inside it (migrations/, shipped as runner/migrations), so the image holds no source tree of its own.
RUN set -e; \
    if ls /tmp/wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /tmp/wheels; fi; \
    /opt/venv/bin/pip wheel --no-cache-dir --disable-pip-version-check "$@" --no-deps -w /tmp/dist /tmp/src; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "$@" /tmp/dist/runner-*.whl; \
    rm -rf /tmp/wheels /tmp/src /tmp/dist; \
    /opt/venv/bin/runner --version; \
    /opt/venv/bin/python -c "from runner.store import migration_files; assert migration_files(), 'no migrations'"

LABEL io.runner.image="runner"
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8 \
    RUNNER_HTTP=0.0.0.0:8080
WORKDIR /opt/runner
EXPOSE 8080
# The compose health check; exits non-zero with the reason when /healthz does not answer 200.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["runner", "health"]
STOPSIGNAL SIGTERM
CMD ["runner", "up", "--no-build"]
