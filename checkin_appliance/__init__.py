"""checkin-appliance: patient check-in and waiting-room queue for small clinics."""

import mimetypes
from datetime import UTC, datetime

# The one place a release's version is bumped. A build (packaging/build.sh) adds the commits
# since this line last changed and the commit's hash (packaging/stamp_version.py), writes
# them to _build.py and packages that; a source checkout says BASE_VERSION and no build time.
BASE_VERSION = "0.2.0"

try:
    from checkin_appliance._build import BUILD_TIME, VERSION
except ImportError:  # a source checkout, or a build from a tree without git
    __version__: str = BASE_VERSION
    __build_time__: datetime | None = None
else:
    __version__ = VERSION
    # When the sources were committed (SOURCE_DATE_EPOCH): no correct clock is earlier.
    __build_time__ = None if BUILD_TIME is None else datetime.fromtimestamp(BUILD_TIME, UTC)

# aiohttp types the files it serves from Python's built-in table, which has every type the
# box serves (html, js, css, svg, png, json, wav). Importing it also makes Python read the
# system's /etc/mime.types into a global table nothing here uses: 0.37 MiB of the server's
# 60 MiB budget (make bench). Before any import of aiohttp, the system's files are skipped.
mimetypes.knownfiles = []
