#!/usr/bin/env bash
# Makes, once, the Debian root a package is built in: build/nspawn/<suite>-<debarch>, with
# debootstrap (root only). A foreign architecture (arm64 on a PC) runs under qemu-user-static
# through binfmt_misc, registered here when it is not yet. The root is kept: delete it to
# start again. DEBIAN_MIRROR names another mirror (bullseye moves to archive.debian.org
# when its long-term support is over).
#
#   packaging/build-root.sh bookworm arm64
set -euo pipefail
cd "$(dirname "$0")/.."

suite=$1
arch=$2
root=build/nspawn/$suite-$arch
# What build.sh and build-deb.sh run inside; systemd, adduser and espeak-ng so that the
# root is also a box the .deb installs into (tests/test_boxes.py).
packages=binutils,git,patchelf,ca-certificates,systemd,adduser,espeak-ng
case $suite in
  bookworm) packages+=,python3,python3-venv,libpython3.11 ;;
  # Python 3.9 only: 3.11 is built from source (packaging/build-python.sh) in this machine's
  # root of the release, and cross-compiled there for another architecture, whose root then
  # needs only the libraries it links (the others are in every Debian).
  bullseye)
    if [ "$arch" = "$(dpkg --print-architecture)" ]; then
      packages+=,build-essential,tcl,xz-utils,libssl-dev,libffi-dev,zlib1g-dev,libbz2-dev,liblzma-dev,uuid-dev
    else
      packages+=,libssl1.1,libffi7
    fi ;;
  *) echo "error: no package list for $suite" >&2; exit 1 ;;
esac

packaging/binfmt.sh "$arch"
if [ ! -x "$root/usr/bin/dpkg" ]; then
  [ "$(id -u)" = 0 ] || { echo "error: making $root needs root (debootstrap)" >&2; exit 1; }
  command -v debootstrap >/dev/null || { echo "error: install debootstrap" >&2; exit 1; }
  rm -rf "$root.tmp" && mkdir -p build/nspawn
  started=$(date +%s)
  debootstrap --arch="$arch" --variant=minbase --include="$packages" \
    "$suite" "$root.tmp" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  mv "$root.tmp" "$root"
  echo "made $root in $(($(date +%s) - started)) s"
fi
[ "$suite" = bullseye ] && packaging/build-python.sh "$root"
true
