"""Record and patient ids across databases: the one rule of qualified ids, ``"<database>:<id>"``.

A store combined from several databases (:mod:`ecgtransfer.combine`) holds its record and patient ids qualified by
database (``"mitdb:100"``, ``"svdb:800"``), so that ids of different databases never collide. :func:`qualify` makes
one, :func:`split_qualified` reads one back; the store, the splits, the combination and the bench all use these.
"""
from __future__ import annotations

#: joins a database name and a record or patient id in a combined store: ``"mitdb:100"`` (:func:`qualify`)
DATABASE_SEPARATOR = ":"


def qualify(database: str, ident: str) -> str:
    """The id ``ident`` (a record, a patient, a source file) of ``database`` as a combined store holds it:
    ``qualify("svdb", "800") == "svdb:800"``. The one rule of qualified ids; :func:`split_qualified` reverses it."""
    return f"{database}{DATABASE_SEPARATOR}{ident}"


def split_qualified(ident: str) -> tuple[str | None, str]:
    """``(database, id)`` of a qualified id (``"mitdb:100"`` -> ``("mitdb", "100")``); ``(None, ident)`` for a bare
    id (PhysioNet record names hold no ``:``)."""
    database, sep, rest = str(ident).partition(DATABASE_SEPARATOR)
    return (database, rest) if sep else (None, str(ident))


__all__ = ["DATABASE_SEPARATOR", "qualify", "split_qualified"]
