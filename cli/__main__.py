"""`python -m cli ...` is `servescope ...`."""

import sys

from cli.main import main

sys.exit(main())
