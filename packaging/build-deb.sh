#!/usr/bin/env bash
# Wraps the executable from packaging/build.sh into dist/checkin-appliance_<version>_<debarch>.deb
# with the systemd unit and a commented /etc/checkin-appliance/config.toml. Needs dpkg-deb only.
#
#   packaging/build.sh && packaging/build-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)}

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' checkin_appliance/__init__.py)
binary="dist/checkin-appliance-$version-linux-$(uname -m)"
debarch=$(dpkg --print-architecture)
deb="dist/checkin-appliance_${version}_$debarch.deb"
[ -x "$binary" ] || { echo "error: $binary is missing: run packaging/build.sh first" >&2; exit 1; }

glibc=$(cat "build/$(basename "$binary").glibc" 2>/dev/null || getconf GNU_LIBC_VERSION | cut -d' ' -f2)

root=build/deb/root
rm -rf build/deb
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
  "$root/etc/checkin-appliance" "$root/usr/share/doc/checkin-appliance"
install -m 0755 "$binary" "$root/usr/bin/checkin-appliance"
install -m 0644 systemd/checkin-appliance.service "$root/lib/systemd/system/"
install -m 0644 systemd/checkin-appliance-clock.path systemd/checkin-appliance-clock.service \
    systemd/checkin-appliance-rtc.service \
    "$root/lib/systemd/system/"  # the clock helper (clock_setting.py) and the RTC after it
install -m 0644 packaging/config.toml "$root/etc/checkin-appliance/config.toml"
install -m 0644 README.md "$root/usr/share/doc/checkin-appliance/README.md"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
  "$root/DEBIAN/"
echo /etc/checkin-appliance/config.toml > "$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: checkin-appliance
Version: $version
Architecture: $debarch
Maintainer: checkin-appliance developers <noreply@checkin-appliance.invalid>
Installed-Size: $installed_size
Depends: libc6 (>= $glibc), espeak-ng
Recommends: adduser
Section: web
Priority: optional
Description: patient check-in and waiting-room queue for small clinics
 One service on the clinic's LAN: patients check in on a kiosk tablet, doctors call
 them from their browser, and a wall display shows the queue live (HTTPS and wss://
 with the box's own certificate authority). Data stays in one SQLite file on the box.
 .
 The program is one self-contained executable (Python and its libraries inside);
 it runs as the hardened systemd service checkin-appliance. espeak-ng speaks the
 calls on the wall display offline (most TV browsers have no voice of their own).
CONTROL
chmod 0644 "$root/DEBIAN/control"

# Same inputs, same bytes: fixed file times, root-owned files, sorted by dpkg-deb.
find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "built $deb ($(du -h "$deb" | cut -f1))"
