"""Which store a location names, opened or only described: a postgresql:// URL is the PostgreSQL store, anything
else a directory of the embedded store. Takes a location, not Settings: the settings module is the one that
turns QABOT_STORE / QABOT_HOME / QABOT_STORE_READ into these arguments (Settings.location, store_read)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from embeddings.store.urls import is_pg_url

if TYPE_CHECKING:
    from embeddings.config import IndexConfig
    from embeddings.encoders.base import Encoder
    from embeddings.store.base import IndexBackend


def open_store(location: str | Path, encoder: Encoder, *, read_urls: Sequence[str] = (),
               create: bool = True) -> IndexBackend:
    """The store at `location` (created empty when missing, unless `create` is False). `read_urls` are read
    replicas of a PostgreSQL primary (the Settings refuse them for a directory)."""
    if is_pg_url(str(location)):
        from embeddings.store.postgres.store import PgIndex

        return PgIndex(str(location), encoder, create=create, read_urls=tuple(read_urls))
    from embeddings.store.embedded.index import EmbeddedIndex

    return EmbeddedIndex(Path(location).expanduser(), encoder, create=create)


def read_config(location: str | Path) -> IndexConfig:
    """What the store at `location` says about itself, without loading a model or opening the store
    (migrate opens the source with the model this names)."""
    if is_pg_url(str(location)):
        from embeddings.store.postgres.store import read_stored_config

        return read_stored_config(str(location))
    from embeddings.store.embedded.index import EmbeddedIndex

    return EmbeddedIndex.read_config(Path(location).expanduser())


def recorded_backend(location: str | Path) -> str | None:
    """The encoder backend the store at `location` was built with, read without loading a model or opening
    caches; None when there is no store yet (or it cannot be read: opening it will say why)."""
    from embeddings.errors import QabotError

    try:
        if is_pg_url(str(location)):
            from embeddings.store.postgres.store import recorded_backend_at_url

            return recorded_backend_at_url(str(location))
        from embeddings.store.embedded.index import recorded_backend_at

        return recorded_backend_at(Path(location).expanduser())
    except (QabotError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a damaged store: opening it says what is wrong, in one line
