import sys

from errorless.cli import main

sys.exit(main())
