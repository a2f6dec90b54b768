import sys

from ltzoo.cli import main

sys.exit(main())
