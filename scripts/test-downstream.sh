#!/usr/bin/env bash
# The testing kit as a downstream project meets it: build the runner's wheel from this checkout, install
# it with its extra [testing] and examples/downstream into a fresh virtualenv outside the checkout, and run
# that project's tests there. A package file, the pytest11 entry point or an image that is missing fails
# here, not only in the runner's own suite (which imports runner from the checkout).
#
# Offline (no index): the wheel and the example install with --no-index; their dependencies come from
# the runner's own .venv through a path entry that leaves the runner itself out, and `pip check` then
# fails if the wheel's metadata does not ask for what the kit imports.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_PY=${VENV_PY:-.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/runner-downstream-XXXXXX")
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/src" "$work/dist" "$work/deps"
cp pyproject.toml README.md "$work/src/"
cp -r runner migrations "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$VENV_PY" -m pip wheel -q --no-deps --no-index --no-build-isolation -w "$work/dist" "$work/src" \
    >"$work/wheel.log" 2>&1 || { tail -n 40 "$work/wheel.log"; exit 1; }
wheel=$(ls "$work"/dist/runner-*.whl)

# The dependencies, without the runner's editable install of this checkout.
site=$("$VENV_PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
for entry in "$site"/*; do
    case "$(basename "$entry")" in
        runner|runner-*|__editable__*|*.pth) ;;
        *) ln -s "$entry" "$work/deps/" ;;
    esac
done
python3 -m venv --without-pip "$work/venv"
py="$work/venv/bin/python"
"$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" | {
    read -r fresh; echo "$work/deps" > "$fresh/zz_runner_downstream_deps.pth"; }
"$VENV_PY" -m pip --python "$py" install -q --no-deps --no-index --no-build-isolation "$wheel[testing]" \
    ./examples/downstream >"$work/install.log" 2>&1 || { tail -n 40 "$work/install.log"; exit 1; }
"$VENV_PY" -m pip --python "$py" check

cp -r examples/downstream "$work/project"
cp examples/*.py examples/*.json "$work/"   # the seed's scripts, where the project's tests look (../)
cd "$work/project"
"$py" -c "import runner, sys; assert runner.__file__.startswith('$work/venv'), runner.__file__"
TESTCONTAINERS_RYUK_DISABLED=${TESTCONTAINERS_RYUK_DISABLED:-true} "$py" -m pytest -q -p no:cacheprovider
