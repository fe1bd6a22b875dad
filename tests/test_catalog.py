"""What is particular to one database is data of its catalog entry, and the layers above ask for it.

Paced records, the reader of a database's record labels (and the ``convert`` parameter that chooses them) and de
Chazal's DS1/DS2 live on :class:`ecgtransfer.physionet.catalog.Database`; conversion and splits read them there
instead of testing a database's name (issue 21).
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import ecgtransfer
from ecgtransfer.conversion import plan_conversion
from ecgtransfer.errors import CatalogError
from ecgtransfer.physionet import catalog
from ecgtransfer.physionet.catalog import DATABASES, dechazal_database, get_database
from ecgtransfer.signals import rhythm
from ecgtransfer.signals.beats import PACED_RECORDS
from ecgtransfer.signals.split import DECHAZAL_DATABASE, DS1, DS2

CONVERSION = Path(ecgtransfer.__file__).parent / "conversion"


def test_record_labels_name_a_reader_and_a_convert_parameter():
    params = inspect.signature(plan_conversion).parameters
    with_labels = {name for name, db in DATABASES.items() if db.record_labels is not None}
    assert with_labels == {"challenge-2017", "ludb"}
    for db in DATABASES.values():
        if db.record_labels is not None:
            assert db.record_labels.reader in rhythm.RECORD_LABEL_READERS
            assert db.record_labels.option in params and db.record_labels.option in ("reference", "rhythm_classes")
            assert set(db.tasks) & {"rhythm", "rhythm-beats"}


def test_paced_records_are_the_catalogs():
    assert get_database("mitdb").paced_records == ("102", "104", "107", "217")
    assert PACED_RECORDS == {"mitdb": ("102", "104", "107", "217")}
    assert all(not db.paced_records for name, db in DATABASES.items() if name != "mitdb")


def test_dechazal_records_are_mitdbs(monkeypatch):
    db = dechazal_database()
    assert db.name == DECHAZAL_DATABASE == "mitdb"
    assert (DS1, DS2) == db.dechazal_records
    assert len(DS1) == len(DS2) == 22 and not set(DS1) & set(DS2)
    assert not (set(DS1) | set(DS2)) & set(db.paced_records)
    second = {**DATABASES, "other": catalog.Database(**{**vars(DATABASES["mitdb"]), "name": "other"})}
    monkeypatch.setattr(catalog, "DATABASES", second)
    with pytest.raises(CatalogError, match="for 2 databases, expected one"):
        dechazal_database()


def test_conversion_never_tests_a_database_name():
    """The converter asks the catalog entry; no ``db.name == ...`` branch and no database name in its code."""
    names = "|".join(re.escape(n) for n in DATABASES)
    for path in sorted(CONVERSION.glob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not re.search(r"\.name\s*(==|!=|in\b)", code), f"{path.name}:{lineno}: {line.strip()}"
            assert not re.search(rf"==\s*[\"'](?:{names})[\"']", code), f"{path.name}:{lineno}: {line.strip()}"
