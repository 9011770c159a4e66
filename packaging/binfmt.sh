#!/usr/bin/env bash
# Lets this machine run another architecture's programs (arm64 on a PC): qemu-user-static
# registered in binfmt_misc with the F flag (the emulator is opened now, so it also runs
# inside a container root that has none). Nothing to do for this machine's own architecture
# or when already registered; registering needs root.
#
#   packaging/binfmt.sh arm64
set -euo pipefail

arch=$1
[ "$arch" = "$(dpkg --print-architecture)" ] && exit 0
case $arch in
  arm64) qemu=aarch64 ;;
  amd64) qemu=x86_64 ;;
  *) echo "error: no emulator known for $arch" >&2; exit 1 ;;
esac
entry=/proc/sys/fs/binfmt_misc/qemu-$qemu
[ -e "$entry" ] && grep -q '^flags: .*F' "$entry" && exit 0
[ "$(id -u)" = 0 ] || { echo "error: registering qemu-$qemu in binfmt_misc needs root" >&2; exit 1; }
conf=/usr/lib/binfmt.d/qemu-$qemu.conf
[ -f "$conf" ] || { echo "error: $conf is missing: apt-get install qemu-user-static" >&2; exit 1; }
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e "$entry" ] && echo -1 > "$entry"  # registered without F: again, with it
grep "^:qemu-$qemu:" "$conf" > /proc/sys/fs/binfmt_misc/register
