#!/usr/bin/env bash
# The release files from one commit (`make package-all`): for amd64 (PCs) and arm64
# (Raspberry Pi), each built in its own Debian root (packaging/build-in-root.sh, arm64 under
# emulation), the one-file executable and the .deb, and dist/SHA256SUMS over the four.
# Root only; the roots and the builds' venvs are kept, so a second run takes minutes.
#
#   packaging/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
for arch in amd64 arm64; do
  packaging/build-in-root.sh "$arch"
done
version=$(cat build/version)
files=(
  "checkin-appliance-$version-linux-x86_64"
  "checkin-appliance_${version}_amd64.deb"
  "checkin-appliance-$version-linux-aarch64"
  "checkin-appliance_${version}_arm64.deb"
)
for file in "${files[@]}"; do
  [ -f "dist/$file" ] || { echo "error: dist/$file was not built (version $version)" >&2; exit 1; }
done
(cd dist && sha256sum "${files[@]}" > SHA256SUMS)
cat dist/SHA256SUMS
echo "released $version in $(($(date +%s) - started)) s"
