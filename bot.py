"""`python bot.py [--config PATH]` is `nstbot [--config PATH] run`."""

import sys

from nstbot.cli import main

if __name__ == "__main__":
    sys.exit(main([*sys.argv[1:], "run"]))
