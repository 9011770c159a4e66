#!/usr/bin/env bash
# Builds the previous release's .deb from git, for the upgrade test (tests/test_deb_upgrade.py):
# build/previous/<commit>/checkin-appliance_<version>_<arch>.deb, once per commit (kept).
#
#   packaging/build-previous.sh [COMMIT]      # default: 88654a7, the release 0.1.0
set -euo pipefail
cd "$(dirname "$0")/.."

commit=$(git rev-parse --short=7 "${1:-88654a7}^{commit}")
out=build/previous/$commit
if compgen -G "$out/*.deb" >/dev/null; then
  echo "kept $(ls "$out"/*.deb)"
  exit 0
fi
rm -rf "$out" && mkdir -p "$out/src/build"
git archive "$commit" | tar -x -C "$out/src"
# Its own scripts, with its commit's time, and this tree's build venv (same PyInstaller).
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct "$commit")
[ -d build/venv ] && ln -s "$(pwd)/build/venv" "$out/src/build/venv"
(cd "$out/src" && packaging/build.sh >/dev/null && packaging/build-deb.sh)
mv "$out"/src/dist/*.deb "$out/"
rm -rf "$out/src"
echo "built $(ls "$out"/*.deb)"
