"""``python -m anynet.cli`` runs the ``anynet`` command, as ``python -m anynet`` does."""

import sys

from anynet.cli import main

sys.exit(main())
