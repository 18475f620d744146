"""``python -m bench``: anynet against its peers (see bench/run.py)."""

from bench.run import main

raise SystemExit(main())
