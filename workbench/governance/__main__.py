"""`python -m workbench.governance serve`: run the governance service in the foreground."""

import sys

from .service import main

if __name__ == "__main__":
    sys.exit(main())
