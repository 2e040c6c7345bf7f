"""``python -m examples.autogen_support``: run the support desk example offline."""

import sys

from examples.autogen_support.desk import main

sys.exit(main())
