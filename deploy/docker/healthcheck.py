"""Docker HEALTHCHECK: GET /health/live on this container's port; exit 0 if it answers 200.

Plain standard library, so the image needs no curl.
"""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('INFERHUB_PORT', '8888')}/health/live"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
