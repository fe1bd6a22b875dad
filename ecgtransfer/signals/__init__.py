"""ecgtransfer.signals: from WFDB records to labelled segments (numpy).

- :mod:`~ecgtransfer.signals.record`: read records and headers with wfdb, select leads by name, list a record's files.
- :mod:`~ecgtransfer.signals.filters`: band-pass / baseline-wander removal, resampling, normalisation (scipy.signal).
- :mod:`~ecgtransfer.signals.beats`: windows around reference R peaks, AAMI classes, RR-interval context.
- :mod:`~ecgtransfer.signals.rhythm`: fixed windows or whole records, challenge-2017 and LUDB rhythm labels.
- :mod:`~ecgtransfer.signals.split`: patient-wise train/val/test splits (also ``ecgtransfer.split``).

:func:`ecgtransfer.convert` puts them together into a segment store.
"""
