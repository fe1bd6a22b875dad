"""Catalog of the PhysioNet databases ecgtransfer knows.

Each :class:`Database` says where its files are (relative to ``<mirror>/<name>/<version>/``), which
records it has (the ``RECORDS`` listing), where its labels come from and which task it serves by default.
Paths follow PhysioNet's layout exactly, so a download lands in ``OUT/<name>/<version>/...``.

It also holds what is particular to one database, as data that the layers above ask for instead of testing
``db.name``: its paced records (excluded from beat tasks), the reader of its per-record labels
(:class:`RecordLabels`) and de Chazal's inter-patient record sets (:func:`dechazal_database`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ecgtransfer.errors import CatalogError

#: default bound on the size of any one file of a database (bytes): a server that streams more, or announces
#: more, is refused. Far above every file of the catalog's databases (the largest, incartdb's 30-min 12-lead
#: ``.dat`` files and PTB-XL's index and metadata tables, are around 10 MB)
DEFAULT_MAX_FILE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class RecordLabels:
    """Where a database's one label per record (its rhythm class) comes from, for the rhythm tasks of ``convert``.

    Attributes:
        reader: the name of the reader in :data:`ecgtransfer.signals.rhythm.RECORD_LABEL_READERS` that reads the
            label file (named here, defined in the signals layer above this one).
        option: the ``convert`` parameter that chooses among the database's labels: ``"reference"``
            (challenge-2017's label file) or ``"rhythm_classes"`` (ludb's class scheme). A store records that
            parameter; the other one is None in its parameters.
    """

    reader: str
    option: str


@dataclass(frozen=True)
class Database:
    """One PhysioNet database version.

    Attributes:
        name: PhysioNet slug (``mitdb``), also the folder name.
        title: human-readable name.
        versions: published versions known to work, newest last; ``version`` is the default.
        fs: sampling rate in Hz of the records.
        leads: lead names as the headers spell them (the first is the default for one-lead tasks).
        records_file: path of the ``RECORDS`` listing, relative to the version folder.
        record_dir: folder the names in ``records_file`` are relative to ("" = the version folder).
        metadata_files: label/metadata files that every conversion needs (relative to the version folder).
        annotation: WFDB annotation extension holding labels (``atr``), or None.
        label_source: where labels come from, in words.
        tasks: tasks ``convert`` supports; ``default_task`` is the first.
        patients: record -> patient where several records share a patient (default: one patient per record).
        patients_known: whether ``patients`` (with the one-patient-per-record default) is known to give every
            subject exactly one patient id. False when the database has fewer subjects than records and no
            record -> subject map is available (incartdb: 75 records of 32 subjects), or when its
            documentation does not say: patient-wise splits of such a store may put one subject on two sides,
            and :func:`ecgtransfer.signals.split.split` warns (or refuses).
        citation: what to cite.
        tested: whether the shared test mirror holds this database (the others are described, not tested here).
        max_file_bytes: the most bytes any one file of the database may have (index files included); a download
            that would grow past it is refused (:data:`DEFAULT_MAX_FILE_BYTES` unless a database needs more).
        index_kind: what ``records_file`` is: ``"records"`` (a PhysioNet ``RECORDS`` listing, one name a line) or
            ``"ptbxl"`` (PTB-XL's ``ptbxl_database.csv``: the record paths are its ``filename_lr`` /
            ``filename_hr`` columns, chosen by the rate; :mod:`ecgtransfer.physionet.ptbxl`).
        paced_records: records with a pacemaker, excluded from the ``beats`` task unless asked for (AAMI EC57
            recommendation); mitdb 102 104 107 217.
        record_labels: where the record labels of the rhythm tasks come from (:class:`RecordLabels`); None when the
            database has none.
        dechazal_records: ``(DS1, DS2)``, the inter-patient training and test records of de Chazal et al. 2004
            (mitdb), the ``dechazal`` split's parts; None where the protocol does not apply.
    """

    name: str
    title: str
    versions: tuple[str, ...]
    fs: float
    leads: tuple[str, ...]
    records_file: str
    record_dir: str
    metadata_files: tuple[str, ...]
    annotation: str | None
    label_source: str
    tasks: tuple[str, ...]
    patients: dict[str, str] = field(default_factory=dict)
    patients_known: bool = True
    citation: str = ""
    tested: bool = False
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    index_kind: str = "records"
    paced_records: tuple[str, ...] = ()
    record_labels: RecordLabels | None = None
    dechazal_records: tuple[tuple[str, ...], tuple[str, ...]] | None = None

    @property
    def version(self) -> str:
        """The default (newest known) version."""
        return self.versions[-1]

    @property
    def default_task(self) -> str:
        return self.tasks[0]

    def patient_of(self, record: str) -> str:
        """The patient id of ``record`` (records from one patient share it)."""
        return self.patients.get(record, record)

    def check_version(self, version: str | None) -> str:
        """Return ``version`` (or the default) after checking the catalog knows it."""
        if version is None:
            return self.version
        if version not in self.versions:
            raise CatalogError(f"unknown version {version!r} of {self.name}; known: {', '.join(self.versions)}")
        return version


_PHYSIONET = "Goldberger et al., PhysioBank, PhysioToolkit, and PhysioNet, Circulation 101(23), 2000."

DATABASES: dict[str, Database] = {
    db.name: db
    for db in [
        Database(
            name="mitdb", title="MIT-BIH Arrhythmia Database", versions=("1.0.0",), fs=360.0,
            leads=("MLII", "V1", "V2", "V4", "V5"), records_file="RECORDS", record_dir="",
            metadata_files=(), annotation="atr",
            label_source="beat annotations in <record>.atr (reference R-peak positions and beat symbols)",
            tasks=("beats",),
            # records 201 and 202 were recorded from the same subject (MIT-BIH directory of records)
            patients={"202": "201"},
            paced_records=("102", "104", "107", "217"),
            # de Chazal et al. 2004: the inter-patient training (DS1) and test (DS2) records
            dechazal_records=(
                ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203",
                 "205", "207", "208", "209", "215", "220", "223", "230"),
                ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213", "214",
                 "219", "221", "222", "228", "231", "232", "233", "234")),
            citation="Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. IEEE EMB 20(3), 2001. "
            + _PHYSIONET,
            tested=True,
        ),
        Database(
            name="challenge-2017", title="AF Classification from a Short Single Lead ECG Recording: "
            "PhysioNet/Computing in Cardiology Challenge 2017", versions=("1.0.0",), fs=300.0, leads=("ECG",),
            records_file="training2017/RECORDS", record_dir="training2017",
            metadata_files=("training2017/REFERENCE.csv", "training2017/REFERENCE-v3.csv"), annotation=None,
            label_source="one rhythm label per record in training2017/REFERENCE.csv "
            "(N normal, A atrial fibrillation, O other rhythm, ~ noisy)",
            tasks=("rhythm", "rhythm-beats"),
            # AliveCor recordings: the challenge documents no subject ids and does not state one recording per
            # person, so record-wise groups are not known to be patient-wise
            patients_known=False,
            record_labels=RecordLabels(reader="challenge-2017", option="reference"),
            citation="Clifford GD et al. AF Classification from a Short Single Lead ECG Recording: the "
            "PhysioNet/Computing in Cardiology Challenge 2017. CinC 44, 2017. " + _PHYSIONET,
            tested=True,
        ),
        Database(
            name="ludb", title="Lobachevsky University Electrocardiography Database", versions=("1.0.0", "1.0.1"),
            fs=500.0, leads=("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"),
            records_file="RECORDS", record_dir="", metadata_files=("ludb.csv",), annotation=None,
            label_source="rhythm per record in ludb.csv (column 'Rhythms')", tasks=("rhythm", "rhythm-beats"),
            record_labels=RecordLabels(reader="ludb", option="rhythm_classes"),
            # 200 records of 200 subjects (Kalyakulina et al. 2020)
            citation="Kalyakulina AI et al. LUDB: a new open-access validation tool for electrocardiogram "
            "delineation algorithms. IEEE Access 8, 2020. " + _PHYSIONET,
            tested=True,
        ),
        Database(
            name="incartdb", title="St Petersburg INCART 12-lead Arrhythmia Database", versions=("1.0.0",),
            fs=257.0, leads=("II", "I", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"),
            records_file="RECORDS", record_dir="", metadata_files=(), annotation="atr",
            label_source="beat annotations in <record>.atr", tasks=("beats",),
            # 75 records from 32 subjects; the record -> subject map is not part of the files used here
            patients_known=False,
            citation="Tihonenko V et al. St Petersburg INCART 12-lead Arrhythmia Database. " + _PHYSIONET,
        ),
        Database(
            name="svdb", title="MIT-BIH Supraventricular Arrhythmia Database", versions=("1.0.0",), fs=128.0,
            leads=("ECG1", "ECG2"), records_file="RECORDS", record_dir="", metadata_files=(), annotation="atr",
            label_source="beat annotations in <record>.atr", tasks=("beats",),
            # 78 records; described as distinct recordings (one per subject): not verified offline here
            citation="Greenwald SD. Improved detection and classification of arrhythmias in noise-stressed ECGs. "
            "MIT thesis, 1990. " + _PHYSIONET,
        ),
        Database(
            name="ptb-xl", title="PTB-XL, a large publicly available electrocardiography dataset",
            versions=("1.0.1", "1.0.2", "1.0.3"), fs=500.0,
            leads=("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"),
            # no RECORDS file: the index is ptbxl_database.csv (filename_lr at 100 Hz, filename_hr at 500 Hz)
            records_file="ptbxl_database.csv", record_dir="", metadata_files=("scp_statements.csv",),
            annotation=None,
            label_source="SCP-ECG statements per record in ptbxl_database.csv (scp_codes), aggregated with "
            "scp_statements.csv to the benchmark's levels (all, diagnostic, subdiagnostic, superdiagnostic, form, "
            "rhythm; Strodthoff et al. 2020); patient_id gives the patients, strat_fold the folds",
            tasks=("multilabel",),
            # 21799 records of 18869 patients; convert reads ptbxl_database.csv's patient_id
            citation="Wagner P et al. PTB-XL, a large publicly available electrocardiography dataset. "
            "Scientific Data 7, 2020. Strodthoff N et al. Deep learning for ECG analysis: benchmarks and insights "
            "from PTB-XL. IEEE JBHI 25(5), 2021. " + _PHYSIONET,
            tested=True, index_kind="ptbxl",
        ),
    ]
}


def get_database(name: str) -> Database:
    """Look up a database by its PhysioNet slug; raises :class:`CatalogError` naming the known ones."""
    try:
        return DATABASES[name]
    except KeyError:
        raise CatalogError(f"unknown database {name!r}; known: {', '.join(sorted(DATABASES))}") from None


def dechazal_database() -> Database:
    """The database of de Chazal's inter-patient protocol: the one whose ``dechazal_records`` are set (mitdb)."""
    found = [db for db in DATABASES.values() if db.dechazal_records is not None]
    if len(found) != 1:  # the catalog is data: a second entry would make the dechazal split ambiguous
        raise CatalogError(f"the catalog defines de Chazal's records for {len(found)} databases, expected one")
    return found[0]
