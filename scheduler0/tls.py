"""How every scheduler0 HTTP client verifies an https node: against
``TLSCAFile`` when it is set, else against the system's trust store.

Used by peers (``GET /cluster`` gathering), the CLI and the console. The
contexts are cached per CA file: loading a trust store takes milliseconds and
an ``ssl.SSLContext`` may be shared by any number of clients and threads.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

CA_FILE_ENV = "SCHEDULER0_TLS_CA_FILE"
"""The environment variable of the ``TLSCAFile`` setting."""


def client_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """A verifying client context: hostname checked, certificate chained to
    ``ca_file`` (a PEM bundle) or, without one, to the system store."""
    return _context(str(ca_file) if ca_file else None)


@functools.lru_cache(maxsize=8)
def _context(ca_file: str | None) -> ssl.SSLContext:
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return ssl.create_default_context()
