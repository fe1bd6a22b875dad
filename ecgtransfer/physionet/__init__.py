"""PhysioNet: the catalog of databases and verified, resumable downloads."""
from ecgtransfer.physionet.catalog import DATABASES, Database, get_database

__all__ = ["DATABASES", "Database", "get_database"]
