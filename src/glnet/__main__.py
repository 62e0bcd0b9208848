import sys

from glnet.cli import main

sys.exit(main())
