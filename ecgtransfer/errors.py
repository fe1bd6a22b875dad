"""One small error hierarchy. Every message says what was expected and what was found."""
from __future__ import annotations


class EcgTransferError(Exception):
    """Base class of every error ecgtransfer raises on purpose (bad input, bad files, bad config)."""


class ConfigError(EcgTransferError, ValueError):
    """A parameter, configuration file or command-line value is invalid."""


class CatalogError(EcgTransferError, KeyError):
    """Unknown database, version or record."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DownloadError(EcgTransferError):
    """A file could not be fetched (HTTP error, network failure, no space left)."""


class ChecksumError(DownloadError):
    """A file's SHA256 does not match the database's SHA256SUMS.txt."""


class UnsafePathError(EcgTransferError, ValueError):
    """A name read from a remote index file would escape the target directory."""


class RecordError(EcgTransferError):
    """A WFDB record is missing, malformed or lacks what the task needs."""


class StoreError(EcgTransferError):
    """A segment store is missing, incomplete or inconsistent."""


class WeightsError(EcgTransferError):
    """Model weights are missing, unsafe or do not match the architecture."""


class TrainingError(EcgTransferError):
    """Training cannot proceed (empty split, single class, NaN loss, incompatible checkpoint)."""


class WeightsUnavailableError(WeightsError):
    """Pretrained weights cannot be obtained here (offline machine, no cached file)."""


class SignalError(EcgTransferError, ValueError):
    """Signal values cannot be used as given (NaN or infinite samples, a wrong shape)."""


class BusyError(EcgTransferError):
    """Another process is writing the same output folder (its lock names the holder)."""


class BenchError(EcgTransferError):
    """A bench folder's own files (``results.json``, cell records) are damaged or do not fit together."""
