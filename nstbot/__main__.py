"""`python -m nstbot` is the `nstbot` console script."""

import sys

from nstbot.cli import main

sys.exit(main())
