"""``python -m examples.crewai_support``: run the support desk example offline."""

import sys

from examples.crewai_support.app import main

sys.exit(main())
