#!/usr/bin/env bash
# Builds the executable and the .deb for one architecture inside its Debian root
# (packaging/build-root.sh), with systemd-nspawn as a better chroot: arm64 on a PC runs under
# qemu-user-static, since PyInstaller does not cross-compile. The tree is the same path
# inside; build/<suite>-<debarch>/ stands in for its build/ (the build venv, the analysis and
# the .deb's staging of that root), the results land in dist/ as build.sh and build-deb.sh
# name them. Root only.
#
#   packaging/build-in-root.sh arm64      # make package ARCH=arm64
set -euo pipefail
cd "$(dirname "$0")/.."

arch=$1
suite=${SUITE:-bullseye}  # the release: glibc 2.31 (README, Building the release)
root=build/nspawn/$suite-$arch
[ "$(id -u)" = 0 ] || { echo "error: building in $root needs root (systemd-nspawn)" >&2; exit 1; }
packaging/build-root.sh "$suite" "$arch"
# One build in this tree at a time: each stamps checkin_appliance/_build.py and build/version.
exec 9>build/.package-lock
flock 9

tree=$(pwd)
mkdir -p "build/$suite-$arch" dist
binds=(--bind="$tree" --bind="$tree/build/$suite-$arch:$tree/build")
# git (the version stamp) reads the repository, which a worktree keeps elsewhere.
for dir in $(git rev-parse --path-format=absolute --git-dir --git-common-dir 2>/dev/null | sort -u); do
  case $dir in "$tree"/*) ;; *) binds+=(--bind-ro="$dir") ;; esac
done
# pip inside trusts what this machine trusts (a proxy's CA in its bundle), also the pip of
# a Python built from source, which would otherwise use its own certifi bundle.
cas=/etc/ssl/certs/ca-certificates.crt
[ -f $cas ] && binds+=(--bind-ro=$cas --setenv=PIP_CERT=$cas)
python=python3
[ "$suite" = bullseye ] && python=/opt/python3.11/bin/python3.11  # packaging/build-python.sh
env=(--setenv=PYTHON="$python" --setenv=PIP_DISABLE_PIP_VERSION_CHECK=1 --setenv=PIP_DEFAULT_TIMEOUT=180
  --setenv=SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)}")

started=$(date +%s)
systemd-nspawn -q -D "$root" --register=no --keep-unit --pipe "${binds[@]}" "${env[@]}" \
  --chdir="$tree" /bin/sh -c 'packaging/build.sh && packaging/build-deb.sh' </dev/null
# The version the tests read (tests/test_packaging.py), as a native build leaves it.
cp "build/$suite-$arch/version" build/version
echo "built for $arch in $root in $(($(date +%s) - started)) s"
