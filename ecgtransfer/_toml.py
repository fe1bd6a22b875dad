"""Reading TOML: the one reader of the training and bench config files (``train --config``, ``bench``).

:func:`read_toml` reads a file and turns a missing file or invalid TOML into a one-line
:class:`~ecgtransfer.errors.ConfigError` naming it (``"<label> <path> does not exist"``, ``"<label> <path> is not
valid TOML: ..."``); :func:`loads` and :data:`TOMLDecodeError` are ``tomllib``'s (``tomli`` before Python 3.11).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ecgtransfer.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: ``tomllib.loads``: a TOML document (a string) as a dict
loads = tomllib.loads
#: what :func:`loads` raises on invalid TOML
TOMLDecodeError = tomllib.TOMLDecodeError


def read_toml(path: str | os.PathLike, label: str) -> dict[str, Any]:
    """The TOML document at ``path`` as a dict.

    Args:
        path: the file.
        label: what the file is, first word(s) of the error (``"config file"``, ``"bench config"``).

    Raises:
        ConfigError: ``"<label> <path> does not exist"`` or ``"<label> <path> is not valid TOML: <reason>"``.
    """
    path = Path(path)
    try:  # as text: universal newlines, so a file saved with old Mac line ends (a lone CR) reads as the bench read it
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{label} {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label} {path} is not valid TOML: not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label} {path} is not valid TOML: {exc}") from exc


__all__ = ["TOMLDecodeError", "loads", "read_toml"]
