"""``python -m anynet`` runs the ``anynet`` command."""

import sys

from anynet.cli import main

sys.exit(main())
