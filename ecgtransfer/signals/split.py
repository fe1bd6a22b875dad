"""Patient-wise splits of a segment store into train / validation / test index arrays.

Beats (or windows) of one patient are strongly correlated: a classifier that has seen some of a patient's
beats recognises the others by the patient's morphology, not by the arrhythmia. Splitting segments at
random therefore mixes patients between train and test and reports accuracies that collapse on new
patients (de Chazal et al., IEEE TBME 51(7), 2004). Every method here except ``"random"`` keeps each
patient on exactly one side; ``"random"`` exists only for comparison with the literature and logs a
warning.

Methods:

- ``"patient"`` (default): patients are assigned to train/val/test greedily, largest first (by a seeded,
  jittered size: the seed changes the parts), so that each part gets close to its fraction of every class
  (patient-grouped, class-stratified).
- ``"kfold"``: patients are assigned to ``n_folds`` folds in the same way; test is fold ``fold``, validation
  is carved out of the remaining patients, train is the rest. With ``fold_database`` (a store combined from
  several databases, :mod:`ecgtransfer.combine`) the folds are made over that database's patients only: test is
  fold ``fold`` of them, and every other database's patients are always in train/validation, never in test
  (validation is carved, as always, by patient out of every non-test patient, of every database).
- ``"dechazal"``: mitdb. Train/val come from the DS1 records, test is DS2. Records 201 (DS1) and 202
  (DS2) come from one patient: when both are in the store, 201 is left out of train/val so that no
  patient is on two sides (DS2 stays the standard test set). Records outside DS1 and DS2 (the paced ones)
  are left out. Without DS2 records the test part is empty and a warning is logged. On a combined store
  holding mitdb, test is exactly the mitdb DS2 records and every other database's patients join DS1 in
  train/val.
- ``"records"``: test is the records ``test_records`` and every other record of their patients; train/val is
  the rest, by patient (validation carved as for ``kfold``). In a combined store a name is a record id as
  stored (``"svdb:800"``) or a bare name (``"800"``) that exactly one database has.
- ``"ptbxl"``: PTB-XL's protocol: ``strat_fold`` 1-8 train, 9 validation, 10 test (the store extra
  ``strat_fold`` of a ``multilabel`` ptb-xl store); a patient found in two parts is refused.
- ``"random"``: segment-level, stratified by class. Leaks patients: only on explicit request.

On a combined store the ids are qualified by database (``"mitdb:201"``, :func:`ecgtransfer.signals.ids.qualify`), so
patients of different databases never share an id, and the database of each segment is
:attr:`ecgtransfer.store.SegmentStore.segment_databases`.

Grouping by patient only protects against leaks when the store's patient ids identify subjects. For
databases whose record -> subject map is unknown (incartdb: 75 records of 32 subjects; see
``Database.patients_known`` in the catalog), the store's ``patients_known`` is False and the patient-wise
methods log a warning (``unknown_patients="warn"``, the default), refuse (``"refuse"``) or stay silent
(``"allow"``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ecgtransfer._validate import check_field_types, check_seed
from ecgtransfer.errors import ConfigError
from ecgtransfer.physionet import ptbxl
from ecgtransfer.physionet.catalog import dechazal_database
from ecgtransfer.signals.ids import qualify, split_qualified

log = logging.getLogger(__name__)

METHODS = ("patient", "kfold", "dechazal", "records", "random", "ptbxl")
UNKNOWN_PATIENTS = ("warn", "refuse", "allow")
PARTS = ("train", "val", "test")
#: Spread of the seeded multiplicative jitter of patient sizes that orders the greedy assignment (log scale):
#: 0.3 lets patients within about +-30% of each other's size swap places, so ``seed`` changes the parts.
ORDER_JITTER = 0.3
#: Version of the patient-assignment rule (part of the bench's cell fingerprint: a new rule recomputes cells).
#: 2: jittered largest-first order (seed-dependent); 1: strict largest first (the seed broke ties only).
SPLIT_RULE_VERSION = 2

#: the database of de Chazal et al. 2004's inter-patient protocol (mitdb) and its training (DS1) and test (DS2)
#: records, as the catalog holds them (``Database.dechazal_records``)
_DECHAZAL = dechazal_database()
DECHAZAL_DATABASE: str = _DECHAZAL.name
DS1, DS2 = _DECHAZAL.dechazal_records or ((), ())  # set: dechazal_database finds the one that has them


@dataclass
class Split:
    """Index arrays (int64, sorted, into the store) of each part.

    Attributes:
        train, val, test: segment indices.
        method: the method that made the split.
        patients: part -> sorted patient ids in that part.
        excluded: indices in no part (records outside DS1/DS2 for ``dechazal``); usually empty.
        patients_known: whether the store's patient ids are known to identify subjects (False: a subject
            with several records may be on two sides).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str
    patients: dict[str, list[str]] = field(default_factory=dict)
    excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    patients_known: bool = True

    def sizes(self) -> dict[str, int]:
        return {p: int(len(getattr(self, p))) for p in PARTS}

    def to_dict(self) -> dict[str, Any]:
        """Sizes and patients (indices left out), e.g. for a run's record."""
        return {"method": self.method, "sizes": self.sizes(), "patients": self.patients,
                "excluded": int(len(self.excluded)), "patients_known": self.patients_known}


def _greedy_groups(counts: np.ndarray, fractions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Assign groups (rows of ``counts`` ``[G, K]``, per-class segment counts) to parts with ``fractions`` ``[P]``.

    Groups are taken largest first by a seeded, jittered size (size times ``exp(ORDER_JITTER * z)``,
    ``z ~ N(0, 1)`` from ``rng``: groups within a few tens of percent of each other come in a seed-dependent
    order, so the seed changes the assignment); each goes to the part where it most reduces the
    squared deviation from the part's target count of every class (classes weighted by their inverse
    frequency, so rare classes are spread too). Parts with a positive fraction get at least one group
    when there are enough groups. Returns the part index of each group ``[G]``.
    """
    g, k = counts.shape
    p = len(fractions)
    totals = counts.sum(axis=0).astype(np.float64)
    weights = 1.0 / np.maximum(totals, 1.0) ** 2  # deviations as fractions of each class
    targets = fractions[:, None] * totals[None, :]  # [P, K]
    size_targets = fractions * counts.sum()
    current = np.zeros((p, k))
    sizes = np.zeros(p)
    assign = np.full(g, -1, dtype=np.int64)
    # largest first, but by a seeded, jittered size: patients of similar size swap places from seed to seed, so
    # ``seed`` changes which patients land in each part while the large patients still go first (they are the
    # ones that decide whether every part reaches its class targets)
    jitter = np.exp(ORDER_JITTER * rng.standard_normal(g))
    order = np.argsort(-(counts.sum(axis=1) * jitter), kind="stable")
    n_total = max(float(counts.sum()), 1.0)
    for gi in order:
        row = counts[gi].astype(np.float64)
        best, best_cost = -1, np.inf
        for q in range(p):
            if fractions[q] <= 0:
                continue
            before = np.sum(weights * (current[q] - targets[q]) ** 2) + ((sizes[q] - size_targets[q]) / n_total) ** 2
            after = (np.sum(weights * (current[q] + row - targets[q]) ** 2)
                     + ((sizes[q] + row.sum() - size_targets[q]) / n_total) ** 2)
            cost = after - before
            if cost < best_cost - 1e-12:
                best, best_cost = q, cost
        assign[gi] = best
        current[best] += row
        sizes[best] += row.sum()
    _fill_empty_parts(assign, counts, fractions)
    return assign


def _fill_empty_parts(assign: np.ndarray, counts: np.ndarray, fractions: np.ndarray) -> None:
    """Give, in place, every part with a positive fraction a group when possible: the smallest group of the part
    holding most groups moves to it (``assign`` ``[G]``, ``counts`` ``[G, K]``, ``fractions`` ``[P]``)."""
    p = len(fractions)
    # every part with a positive fraction gets a group when possible: move the smallest group of the part
    # holding most groups
    for q in np.flatnonzero(fractions > 0):
        if np.any(assign == q):
            continue
        n_per = np.bincount(assign, minlength=p)
        donor = int(np.argmax(n_per))
        if n_per[donor] <= 1:
            continue
        members = np.flatnonzero(assign == donor)
        smallest = members[np.argmin(counts[members].sum(axis=1))]
        assign[smallest] = q


def _patient_table(patient_ids: np.ndarray, labels: np.ndarray, n_classes: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique patients ``[G]``, index of each segment's patient ``[N]``, per-class counts ``[G, K]``."""
    patients, inverse = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
    counts = np.zeros((len(patients), n_classes), dtype=np.int64)
    np.add.at(counts, (inverse, np.asarray(labels, dtype=np.int64)), 1)
    return patients, inverse, counts


def _split_groups(patient_ids: np.ndarray, labels: np.ndarray, n_classes: int, fractions: np.ndarray,
                  rng: np.random.Generator, indices: np.ndarray) -> list[np.ndarray]:
    """Split segment ``indices`` by patient into ``len(fractions)`` parts; returns index arrays."""
    patients, inverse, counts = _patient_table(patient_ids[indices], labels[indices], n_classes)
    if len(patients) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in fractions]
    assign = _greedy_groups(counts, fractions, rng)
    return [np.sort(indices[assign[inverse] == q]).astype(np.int64) for q in range(len(fractions))]


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(f"val_fraction and test_fraction must be in [0, 1) with a sum below 1, got "
                          f"{val_fraction} and {test_fraction}")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown split method {method!r}; expected one of {', '.join(METHODS)}")


def _check_folds(n_folds: int, fold: int) -> None:
    if n_folds < 2 or not 0 <= fold < n_folds:
        raise ConfigError(f"kfold needs n_folds >= 2 and 0 <= fold < n_folds, got n_folds={n_folds}, fold={fold}")


def _check_method_fields(method: str, test_records: tuple[str, ...], fold_database: str | None) -> None:
    if method == "records" and not test_records:
        raise ConfigError("the records split needs test_records: the records of the test part")
    if test_records and method != "records":
        raise ConfigError(f"test_records {list(test_records)} apply to the records split only, not {method!r}")
    if fold_database is not None and method != "kfold":
        raise ConfigError(f"fold_database {fold_database!r} applies to the kfold split only, not {method!r}")


#: SplitConfig fields added after the first bench results: records of the split settings (the bench's ``[task]``)
#: leave them out at their default, which leaves every split as it was, so earlier fingerprints stay valid
LATER_FIELDS = {"test_records": (), "fold_database": None}


@dataclass(frozen=True)
class SplitConfig:
    """How a store is split: the one definition of the split settings that training and the bench share.

    Attributes:
        method: ``"patient"`` (default), ``"kfold"``, ``"dechazal"`` or ``"random"`` (:data:`METHODS`).
        seed: seed of the split; ``None``: the caller's seed (a training run uses its ``seed``).
        val_fraction, test_fraction: shares of the segments for validation and test (see :func:`split`).
        n_folds, fold: ``kfold`` only.
        test_records: ``records`` only: the records of the test part (with every other record of their patients).
        fold_database: ``kfold`` only: make the folds over this database's patients (a combined store); the other
            databases' patients always train/validate. ``None``: folds over every patient.

    Validated on construction (each rule once, here): an unknown method, fractions outside [0, 1) or summing
    to 1 or more, (for ``kfold``) ``n_folds < 2`` or a fold outside ``[0, n_folds)``, ``records`` without
    ``test_records``, and ``test_records`` or ``fold_database`` with another method raise
    :class:`~ecgtransfer.errors.ConfigError`.
    """

    method: str = "patient"
    seed: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    n_folds: int = 5
    fold: int = 0
    test_records: tuple[str, ...] = ()
    fold_database: str | None = None

    def __post_init__(self) -> None:
        check_field_types(self, "split")
        if self.seed is not None:
            check_seed(self.seed, "split: seed")
        _check_method(self.method)
        _check_fractions(float(self.val_fraction), float(self.test_fraction))
        if self.method == "kfold":
            _check_folds(int(self.n_folds), int(self.fold))
        records = (self.test_records,) if isinstance(self.test_records, str) else self.test_records
        object.__setattr__(self, "test_records", tuple(str(r) for r in records or ()))
        if self.fold_database is not None:
            object.__setattr__(self, "fold_database", str(self.fold_database))
        _check_method_fields(self.method, self.test_records, self.fold_database)

    def apply(self, store: Any, *, default_seed: int = 0, unknown_patients: str = "warn") -> "Split":
        """:func:`split` of ``store`` with these settings (``seed`` None: ``default_seed``)."""
        return split(store, self.method, seed=default_seed if self.seed is None else int(self.seed),
                     val_fraction=self.val_fraction, test_fraction=self.test_fraction, n_folds=self.n_folds,
                     fold=self.fold, test_records=self.test_records, fold_database=self.fold_database,
                     unknown_patients=unknown_patients)


def split(store: Any, method: str = "patient", *, seed: int = 0, val_fraction: float = 0.15,
          test_fraction: float = 0.15, n_folds: int = 5, fold: int = 0, test_records: Sequence[str] = (),
          fold_database: str | None = None, unknown_patients: str = "warn") -> Split:
    """Split a store (or anything with ``labels``, ``patient_ids``, ``record_ids``, ``num_classes``).

    Args:
        store: a :class:`~ecgtransfer.store.SegmentStore`.
        method: ``"patient"`` (default), ``"kfold"``, ``"dechazal"``, ``"records"`` or ``"random"`` (see the
            module doc).
        seed: random seed: the jittered order of the patient assignment (so the seed changes which patients
            land in validation, and in test for ``patient``/``kfold``), the permutation for ``random``.
        val_fraction, test_fraction: targets as fractions of all segments (``patient``, ``random``);
            for ``kfold``, ``dechazal`` and ``records``, ``val_fraction`` of all segments is carved out of the
            non-test patients. Patient groups make the achieved fractions approximate.
        n_folds, fold: ``kfold`` only: number of folds (>= 2) and the test fold (0 <= fold < n_folds).
        test_records: ``records`` only: record names of the test part (see the module doc for how a name matches).
        fold_database: ``kfold`` only: the database whose patients make the folds (a combined store).
        unknown_patients: what a patient-wise method does when the store's ``patients_known`` is False
            (its patient ids may not identify subjects): ``"warn"`` (default, a logged warning),
            ``"refuse"`` (:class:`ConfigError`) or ``"allow"`` (silent).

    Returns:
        a :class:`Split`; no patient id appears in two parts.
    """
    _check_method(method)
    test_records = (test_records,) if isinstance(test_records, str) else tuple(str(r) for r in test_records)
    _check_method_fields(method, test_records, fold_database)
    patients_known = _check_unknown_patients(store, method, unknown_patients)
    _check_fractions(val_fraction, test_fraction)
    labels = np.asarray(store.labels, dtype=np.int64)
    patient_ids = np.asarray(store.patient_ids).astype(str)
    record_ids = np.asarray(store.record_ids).astype(str)
    n_classes = int(getattr(store, "num_classes", int(labels.max(initial=-1)) + 1))
    n = len(labels)
    rng = np.random.default_rng(seed)
    all_idx = np.arange(n, dtype=np.int64)
    excluded = np.zeros(0, dtype=np.int64)
    seg_db, databases = _segment_databases(store, n)

    if method == "random":
        train, val, test = _random_parts(labels, val_fraction, test_fraction, rng)
    elif method == "patient":
        fr = np.array([1 - val_fraction - test_fraction, val_fraction, test_fraction])
        train, val, test = _split_groups(patient_ids, labels, n_classes, fr, rng, all_idx)
    elif method == "kfold":
        train, val, test = _kfold_parts(patient_ids, labels, n_classes, seg_db, databases, n_folds, fold,
                                        fold_database, val_fraction, rng)
    elif method == "ptbxl":
        train, val, test = _ptbxl_parts(store, patient_ids, all_idx)
    elif method == "records":
        train, val, test = _records_parts(patient_ids, record_ids, labels, n_classes, seg_db, test_records,
                                          val_fraction, rng)
    else:  # dechazal
        train, val, test, excluded = _dechazal_parts(patient_ids, record_ids, labels, n_classes, seg_db,
                                                     databases, val_fraction, rng)
    return _checked_split(train, val, test, method, patient_ids, excluded, patients_known)


def _check_unknown_patients(store: Any, method: str, unknown_patients: str) -> bool:
    """The store's ``patients_known``; when False, a patient-wise ``method`` warns or refuses as
    ``unknown_patients`` says."""
    if unknown_patients not in UNKNOWN_PATIENTS:
        raise ConfigError(f"unknown_patients must be one of {', '.join(UNKNOWN_PATIENTS)}, got {unknown_patients!r}")
    patients_known = bool(getattr(store, "patients_known", True))
    if not patients_known and method != "random" and unknown_patients != "allow":
        database = getattr(store, "database", None) or getattr(store, "manifest", {}).get("database")
        msg = (f"the patient ids of this {database} store are not known to identify subjects (the database has "
               "no record -> subject map here, e.g. incartdb: 75 records of 32 subjects): a subject with several "
               f"records may land on two sides of the {method} split and inflate the results")
        if unknown_patients == "refuse":
            raise ConfigError(msg + "; pass unknown_patients='warn' or 'allow' to split anyway")
        log.warning(msg)
    return patients_known


def _random_parts(labels: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``random`` method: segments of each class permuted and cut by the fractions (leaks patients)."""
    log.warning("random segment-level split: segments of one patient land in train and test, which leaks "
                "patient identity and overstates accuracy; use method='patient' or 'dechazal' for results")
    parts = [[], [], []]
    fr = np.array([1 - val_fraction - test_fraction, val_fraction, test_fraction])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(np.cumsum(fr)[:-1] * len(idx)).astype(int)
        for q, chunk in enumerate(np.split(idx, cuts)):
            parts[q].append(chunk)
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)
                        for p in parts)
    return train, val, test


def _kfold_parts(patient_ids: np.ndarray, labels: np.ndarray, n_classes: int, seg_db: np.ndarray,
                 databases: list[Any], n_folds: int, fold: int, fold_database: str | None, val_fraction: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``kfold`` method: test is fold ``fold`` of the patients (of ``fold_database`` when given), validation
    is carved out of the rest."""
    n = len(labels)
    all_idx = np.arange(n, dtype=np.int64)
    _check_folds(n_folds, fold)
    pool = all_idx
    if fold_database is not None:
        if fold_database not in databases:
            raise ConfigError(f"fold_database {fold_database!r} is not a database of this store; it holds "
                              f"{', '.join(databases)}")
        pool = all_idx[seg_db == fold_database]
    folds = _split_groups(patient_ids, labels, n_classes, np.full(n_folds, 1.0 / n_folds), rng, pool)
    test = folds[fold]
    rest = np.setdiff1d(all_idx, test).astype(np.int64)
    train, val = _carve_val(patient_ids, labels, n_classes, rest, val_fraction * n / max(len(rest), 1), rng)
    return train, val, test


def _records_parts(patient_ids: np.ndarray, record_ids: np.ndarray, labels: np.ndarray, n_classes: int,
                   seg_db: np.ndarray, test_records: tuple[str, ...], val_fraction: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``records`` method: test is ``test_records`` and every other record of their patients, validation is
    carved out of the rest."""
    n = len(labels)
    all_idx = np.arange(n, dtype=np.int64)
    chosen = _resolve_test_records(record_ids, seg_db, test_records)
    test_patients = np.unique(patient_ids[np.isin(record_ids, chosen)])
    in_test = np.isin(patient_ids, test_patients)
    others = sorted(set(record_ids[in_test].tolist()) - set(chosen))
    if others:
        log.info("records split: %s share a patient with the test records and go to test too", " ".join(others))
    test = all_idx[in_test]
    rest = all_idx[~in_test]
    train, val = _carve_val(patient_ids, labels, n_classes, rest, val_fraction * n / max(len(rest), 1), rng)
    return train, val, test


def _dechazal_parts(patient_ids: np.ndarray, record_ids: np.ndarray, labels: np.ndarray, n_classes: int,
                    seg_db: np.ndarray, databases: list[Any], val_fraction: float, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``dechazal`` method: (train, val, test, excluded); train/val from DS1 (and every other database's
    segments), test DS2, the other mitdb records excluded."""
    n = len(labels)
    all_idx = np.arange(n, dtype=np.int64)
    if DECHAZAL_DATABASE not in databases and databases != [None]:
        raise ConfigError(f"the dechazal split is defined for {DECHAZAL_DATABASE} records, this store holds "
                          f"{'+'.join(str(d) for d in databases)}")
    # a store that names no database is taken as mitdb (its records are matched against DS1/DS2)
    is_mitdb = (seg_db == DECHAZAL_DATABASE) if databases != [None] else np.ones(n, dtype=bool)
    bare = np.asarray([split_qualified(r)[1] for r in record_ids.tolist()], dtype=str) if n else record_ids
    in_ds1 = is_mitdb & np.isin(bare, DS1)
    in_ds2 = is_mitdb & np.isin(bare, DS2)
    shared = set(patient_ids[in_ds1]) & set(patient_ids[in_ds2])
    if shared:
        log.warning("patient(s) %s have records in DS1 and DS2 (mitdb 201 and 202 are one subject); their DS1 "
                    "records are left out of train/val so that no patient is on two sides",
                    ", ".join(sorted(shared)))
        in_ds1 &= ~np.isin(patient_ids, sorted(shared))
    test = all_idx[in_ds2]
    excluded = all_idx[is_mitdb & ~in_ds1 & ~in_ds2]
    if len(excluded):
        log.info("dechazal split: %d segments of records outside DS1/DS2 left out (%s)", len(excluded),
                 " ".join(sorted(set(record_ids[excluded]))))
    if not len(test):
        log.warning("dechazal split: no DS2 record in this store, the test part is empty (convert the full "
                    "mitdb for the DS1 -> DS2 evaluation)")
    if not in_ds1.any():
        raise ConfigError("dechazal split: no DS1 record in this store")
    others = ~is_mitdb
    if others.any():
        log.info("dechazal split: the %d segments of %s train/validate with DS1", int(others.sum()),
                 "+".join(d for d in databases if d != DECHAZAL_DATABASE))
    trainval = all_idx[in_ds1 | others]
    train, val = _carve_val(patient_ids, labels, n_classes, trainval, val_fraction * n / max(len(trainval), 1),
                            rng)
    return train, val, test, excluded


def _checked_split(train: np.ndarray, val: np.ndarray, test: np.ndarray, method: str, patient_ids: np.ndarray,
                   excluded: np.ndarray, patients_known: bool) -> Split:
    """The :class:`Split` of the parts, checked to hold no patient on two sides (but for ``random``), logged."""
    result = Split(train=train, val=val, test=test, method=method,
                   patients={p: sorted(set(patient_ids[ix].tolist())) for p, ix in zip(PARTS, (train, val, test))},
                   excluded=np.sort(excluded).astype(np.int64), patients_known=patients_known)
    if method != "random":
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = set(result.patients[a]) & set(result.patients[b])
            assert not both, f"patients {both} in {a} and {b}"  # guaranteed by construction
    log.info("%s split: %s", method, result.sizes())
    return result

def _ptbxl_parts(store: Any, patient_ids: np.ndarray, all_idx: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PTB-XL's protocol (Wagner et al. 2020; Strodthoff et al. 2020): ``strat_fold`` 1-8 train, 9 validation, 10
    test. The folds were drawn per patient; a store whose folds put one patient in two parts is refused."""
    extra = getattr(store, "extra", None)
    names = list(getattr(store, "manifest", {}).get("extras", []))
    if extra is None or ptbxl.FOLD_EXTRA not in names:
        raise ConfigError(f"the ptbxl split needs the store extra {ptbxl.FOLD_EXTRA!r} (a ptb-xl store of the "
                          f"multilabel task); this store has {', '.join(names) or 'no extras'}")
    folds = np.asarray(extra(ptbxl.FOLD_EXTRA)).astype(np.int64)
    parts = [all_idx[np.isin(folds, ptbxl.TRAIN_FOLDS)], all_idx[folds == ptbxl.VAL_FOLD],
             all_idx[folds == ptbxl.TEST_FOLD]]
    seen: dict[str, str] = {}
    for name, ix in zip(PARTS, parts):
        for pid in np.unique(patient_ids[ix]).tolist():
            if seen.setdefault(pid, name) != name:
                raise ConfigError(f"ptbxl split: patient {pid} has records in the {seen[pid]} and {name} folds; "
                                  "strat_fold should keep every patient in one fold (is ptbxl_database.csv edited?)")
    return parts[0], parts[1], parts[2]


def _segment_databases(store: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    """``(database of each segment [N], the databases in store order)``: the store's
    :attr:`~ecgtransfer.store.SegmentStore.segment_databases` when it has them, else its one ``database`` (``None``
    for an object that names none)."""
    seg_db = getattr(store, "segment_databases", None)
    if seg_db is not None:
        seg_db = np.asarray(seg_db).astype(str)
        listed = getattr(store, "databases", None)
        return seg_db, list(listed) if listed else sorted(set(seg_db.tolist()))
    database = getattr(store, "database", None) or getattr(store, "manifest", {}).get("database")
    return np.full(n, "" if database is None else str(database)), [database]


def _resolve_test_records(record_ids: np.ndarray, seg_db: np.ndarray, names: Sequence[str]) -> list[str]:
    """The stored record ids that ``names`` (of the ``records`` split) denote.

    A name is a record id as stored; else ``"<database>:<id>"`` or a bare id, which must denote exactly one
    stored record. Unknown names and bare names several databases have are one :class:`ConfigError`."""
    table: dict[str, tuple[str, str]] = {}  # stored id -> (database, bare id)
    for rid, db in zip(record_ids.tolist(), seg_db.tolist()):
        if rid not in table:
            table[rid] = (db, split_qualified(rid)[1])
    chosen: list[str] = []
    unknown: list[str] = []
    for name in names:
        if name in table:
            found = [name]
        else:
            db, bare = split_qualified(name)
            found = [rid for rid, (d, b) in table.items() if b == bare and (db is None or d == db)]
        if not found:
            unknown.append(name)
        elif len(found) > 1:
            raise ConfigError(f"records split: test record {name!r} is in several databases of this store; name one "
                              f"of {', '.join(qualify(*table[r]) for r in sorted(found))}")
        elif found[0] not in chosen:
            chosen.append(found[0])
    if unknown:
        raise ConfigError(f"records split: no record {', '.join(map(repr, unknown))} in this store (it has "
                          f"{len(table)} records, e.g. {', '.join(sorted(table)[:5])})")
    return chosen


def _carve_val(patient_ids: np.ndarray, labels: np.ndarray, n_classes: int, indices: np.ndarray,
               fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` by patient into (train, val) with about ``fraction`` of them in val."""
    fraction = float(min(max(fraction, 0.0), 0.9))
    if fraction <= 0:
        return np.sort(indices).astype(np.int64), np.zeros(0, dtype=np.int64)
    train, val = _split_groups(patient_ids, labels, n_classes, np.array([1 - fraction, fraction]), rng, indices)
    return train, val
