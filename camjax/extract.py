"""``python -m camjax.extract ...`` = ``camjax extract ...`` (see :mod:`camjax.cli_extract`).

The ``camjax.extract`` *function* lives in :mod:`camjax.extraction`.
"""

import sys

from camjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
