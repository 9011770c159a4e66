#!/usr/bin/env bash
# Builds CPython 3.11 (with SQLite 3.40) in an old Debian root, once, into its /opt/python3.11:
# the Python packaging/build.sh freezes there, so the program needs no newer C library than
# that root's (bullseye: glibc 2.31), while bullseye's own Python is 3.9 and its SQLite 3.34
# (the database's RETURNING upserts need 3.35). The sources are Debian bookworm's, from
# deb.debian.org (this machine reaches no python.org): the upstream tarballs and, from
# Debian's patch series, only the upstream security and bug fixes (not Debian's layout
# changes). Pinned by SHA-256 and kept in build/sources/. OpenSSL is the root's (1.1.1).
# Native on amd64 in minutes; under arm64 emulation much longer (README, Building).
#
#   packaging/build-python.sh build/nspawn/bullseye-amd64
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

started=$(date +%s)
systemd-nspawn -q -D "$root" --register=no --keep-unit --pipe \
  --bind-ro="$(pwd)/build/sources:/usr/src/checkin-sources" \
  --setenv=PREFIX="$prefix" --setenv=JOBS="$(nproc)" /bin/bash -s <<'SCRIPT'
set -euo pipefail
src=/usr/src/checkin-sources
work=/usr/src/checkin-build
rm -rf "$work" "$PREFIX" && mkdir -p "$work" "$PREFIX"
cd "$work"
# Patches from a Debian series, from the first named one to the end.
apply() {
  local dir=$1 first=$2
  sed -n "/^$first\$/,\$p" "$dir/debian/patches/series" | grep -v '^#' | while read -r patch; do
    patch -d "$dir" -p1 --quiet --forward < "$dir/debian/patches/$patch"
  done
}

tar -xf "$src"/sqlite3_3.40.1.orig.tar.xz && mv sqlite3-3.40.1 sqlite
tar -xf "$src"/sqlite3_3.40.1-2+deb12u2.debian.tar.xz -C sqlite
apply sqlite 41-fix_a_bug_in_the_NOT_NULL-IS_NULL_optimization.patch
(
  cd sqlite
  # Debian's compile-time options that matter here (json is built in since 3.38).
  CFLAGS="-O2 -DSQLITE_SECURE_DELETE -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_FTS3 \
    -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_DBSTAT_VTAB \
    -DSQLITE_MAX_VARIABLE_NUMBER=250000" \
    ./configure --prefix="$PREFIX" --disable-static --disable-tcl --disable-readline >/dev/null
  make -j"$JOBS" >/dev/null
  make install >/dev/null
)

tar -xf "$src"/python3.11_3.11.2.orig.tar.gz && mv Python-3.11.2 python
tar -xf "$src"/python3.11_3.11.2-6+deb12u6.debian.tar.xz -C python
apply python shutdown-deadlock.diff
(
  cd python
  ./configure --prefix="$PREFIX" --enable-shared --with-ensurepip=install \
    CPPFLAGS="-I$PREFIX/include" LDFLAGS="-L$PREFIX/lib -Wl,-rpath,$PREFIX/lib" >/dev/null
  make -j"$JOBS" >/dev/null
  make altinstall >/dev/null
)
"$PREFIX/bin/python3.11" -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid; print("python", __import__("sys").version.split()[0], "sqlite", sqlite3.sqlite_version, ssl.OPENSSL_VERSION)'
rm -rf "$work"
SCRIPT
touch "$stamp"
echo "built $prefix in $root in $(($(date +%s) - started)) s"
