"""checkin-appliance: patient check-in and waiting-room queue for small clinics."""

import mimetypes

__version__ = "0.1.0"

# aiohttp types the files it serves from Python's built-in table, which has every type the
# box serves (html, js, css, svg, png, json, wav). Importing it also makes Python read the
# system's /etc/mime.types into a global table nothing here uses: 0.37 MiB of the server's
# 60 MiB budget (make bench). Before any import of aiohttp, the system's files are skipped.
mimetypes.knownfiles = []
