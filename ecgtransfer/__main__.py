"""``python -m ecgtransfer`` runs the command line."""
import sys

from ecgtransfer.cli import main

sys.exit(main())
