#!/usr/bin/env bash
# Builds CPython 3.11 (with SQLite 3.40) for an old Debian root, once, into its /opt/python3.11:
# the Python packaging/build.sh freezes there, so the program needs no newer C library than
# that root's (bullseye: glibc 2.31), while bullseye's own Python is 3.9 and its SQLite 3.34
# (the database's RETURNING upserts need 3.35). The sources are Debian bookworm's, from
# deb.debian.org (this machine reaches no python.org): the upstream tarballs and, from
# Debian's patch series, only the upstream security and bug fixes (not Debian's layout
# changes). Pinned by SHA-256 and kept in build/sources/. OpenSSL is the root's (1.1.1).
# For this machine's architecture, built natively in the root (minutes). For another one
# (arm64 on a PC), cross-compiled in this machine's root of the same release, with Debian's
# cross compiler and that release's arm64 libraries, its native Python as the build Python,
# and installed into the foreign root: minutes too, where a build under emulation takes hours.
#
#   packaging/build-python.sh build/nspawn/bullseye-amd64
#   packaging/build-python.sh build/nspawn/bullseye-arm64   # after the amd64 one
set -euo pipefail
cd "$(dirname "$0")/.."

root=$1
prefix=/opt/python3.11
pool=http://deb.debian.org/debian/pool/main
sources=(
  "p/python3.11/python3.11_3.11.2.orig.tar.gz 2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849"
  "p/python3.11/python3.11_3.11.2-6+deb12u6.debian.tar.xz 35139070c56095690503166248ea5a8eb90e53704eba137e3decbb0ec2bc01ec"
  "s/sqlite3/sqlite3_3.40.1.orig.tar.xz aaa776260ab4dc976db34aa7891819484c8676b5b2783123ebc6301e2ca5d655"
  "s/sqlite3/sqlite3_3.40.1-2+deb12u2.debian.tar.xz 0843bc12e4364076477935ce313a6d0796fd899a989ff18ebb6545540e10e4ca"
)
stamp="$root$prefix/.built-$(printf '%s\n' "${sources[@]}" | sha256sum | cut -c1-12)"
[ -e "$stamp" ] && exit 0
# One build per root at a time (a second one waits, then finds the stamp).
exec 9>"$root.python-lock"
flock 9
[ -e "$stamp" ] && exit 0

mkdir -p build/sources
for entry in "${sources[@]}"; do
  read -r path sum <<<"$entry"
  file=build/sources/$(basename "$path")
  if [ ! -f "$file" ] || ! echo "$sum  $file" | sha256sum -c --quiet 2>/dev/null; then
    curl -fsS --retry 3 -o "$file.part" "$pool/$path" || {
      echo "error: cannot fetch $pool/$path (a newer Debian revision replaced it? update" \
        "the pins in $0 from its .dsc)" >&2
      exit 1
    }
    echo "$sum  $file.part" | sha256sum -c --quiet || { echo "error: $file: wrong SHA-256" >&2; exit 1; }
    mv "$file.part" "$file"
  fi
done

name=$(basename "$root")
suite=${name%-*}
arch=${name##*-}
here=$(dpkg --print-architecture)
run=(systemd-nspawn -q --register=no --keep-unit --pipe)
started=$(date +%s)
if [ "$arch" = "$here" ]; then
  builder=$root
  target=()
else
  # The build Python: this machine's root of the release, with its own Python built.
  builder=build/nspawn/$suite-$here
  packaging/build-root.sh "$suite" "$here"
  case $arch in
    arm64) triplet=aarch64-linux-gnu ;;
    amd64) triplet=x86_64-linux-gnu ;;
    *) echo "error: no cross compiler known for $arch" >&2; exit 1 ;;
  esac
  tools=(crossbuild-essential-"$arch")
  for lib in libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev uuid-dev; do tools+=("$lib:$arch"); done
  "${run[@]}" -D "$builder" /bin/sh -ec "
    dpkg --print-foreign-architectures | grep -qx $arch || dpkg --add-architecture $arch
    dpkg -s ${tools[*]} >/dev/null 2>&1 && exit 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${tools[*]} >/dev/null"
  # The foreign root's /opt, where the result is installed (as DESTDIR).
  target=(--bind="$(pwd)/$root/opt:/target/opt" --setenv=HOST="$triplet" --setenv=DESTDIR=/target)
fi

"${run[@]}" -D "$builder" "${target[@]}" \
  --bind-ro="$(pwd)/build/sources:/usr/src/checkin-sources" \
  --setenv=PREFIX="$prefix" --setenv=JOBS="$(nproc)" /bin/bash -s <<'SCRIPT'
set -euo pipefail
src=/usr/src/checkin-sources
work=/usr/src/checkin-build${HOST:+-$HOST}
dest=${DESTDIR:-}$PREFIX
rm -rf "$work" "$dest" && mkdir -p "$work" "$dest"
cd "$work"
# Patches from a Debian series, from the first named one to the end.
apply() {
  local dir=$1 first=$2
  sed -n "/^$first\$/,\$p" "$dir/debian/patches/series" | grep -v '^#' | while read -r patch; do
    patch -d "$dir" -p1 --quiet --forward < "$dir/debian/patches/$patch"
  done
}
# configure's options: for another architecture (HOST), the machines, the build Python, and
# what configure cannot find out without running the target's programs.
options=()
[ -n "${HOST:-}" ] && options=(--host="$HOST" --build="$(gcc -dumpmachine)")

tar -xf "$src"/sqlite3_3.40.1.orig.tar.xz && mv sqlite3-3.40.1 sqlite
tar -xf "$src"/sqlite3_3.40.1-2+deb12u2.debian.tar.xz -C sqlite
apply sqlite 41-fix_a_bug_in_the_NOT_NULL-IS_NULL_optimization.patch
(
  cd sqlite
  # Debian's compile-time options that matter here (json is built in since 3.38).
  CFLAGS="-O2 -DSQLITE_SECURE_DELETE -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_FTS3 \
    -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_DBSTAT_VTAB \
    -DSQLITE_MAX_VARIABLE_NUMBER=250000" \
    ./configure "${options[@]}" --prefix="$PREFIX" --disable-static --disable-tcl \
    --disable-readline >/dev/null
  make -j"$JOBS" >/dev/null
  make install DESTDIR="${DESTDIR:-}" >/dev/null
)

tar -xf "$src"/python3.11_3.11.2.orig.tar.gz && mv Python-3.11.2 python
tar -xf "$src"/python3.11_3.11.2-6+deb12u6.debian.tar.xz -C python
apply python shutdown-deadlock.diff
(
  cd python
  if [ -n "${HOST:-}" ]; then
    options+=(--with-build-python="$PREFIX/bin/python3.11" --with-ensurepip=no
      ac_cv_file__dev_ptmx=yes ac_cv_file__dev_ptc=no ac_cv_buggy_getaddrinfo=no)
  else
    options=(--with-ensurepip=install)
  fi
  ./configure "${options[@]}" --prefix="$PREFIX" --enable-shared \
    CPPFLAGS="-I$dest/include" LDFLAGS="-L$dest/lib -Wl,-rpath,$PREFIX/lib" >/dev/null
  make -j"$JOBS" >/dev/null
  make altinstall DESTDIR="${DESTDIR:-}" >install.log 2>&1 || { tail -40 install.log >&2; exit 1; }
)
rm -rf "$work"
SCRIPT

# The check, in the root the Python is for (emulated for another architecture), with pip
# put in there (a cross build cannot run the target's ensurepip).
"${run[@]}" -D "$root" --setenv=PREFIX="$prefix" /bin/sh -ec '
  "$PREFIX/bin/python3.11" -c "import pip" 2>/dev/null ||
    "$PREFIX/bin/python3.11" -m ensurepip --altinstall >/dev/null
  "$PREFIX/bin/python3.11" -c "import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, platform; print(\"python\", platform.python_version(), platform.machine(), \"sqlite\", sqlite3.sqlite_version, ssl.OPENSSL_VERSION)"'
touch "$stamp"
echo "built $prefix for $root in $(($(date +%s) - started)) s"
