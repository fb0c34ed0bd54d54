import sys

from melodylm.cli import main

sys.exit(main())
