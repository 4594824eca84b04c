"""``python -m camjax <subcommand> ...`` = ``camjax <subcommand> ...``."""

import sys

from camjax.cli import main

if __name__ == "__main__":
    sys.exit(main())
