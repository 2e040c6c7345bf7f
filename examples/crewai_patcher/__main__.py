"""``python -m examples.crewai_patcher``: run the patcher crew offline and print the report."""

import sys

from examples.crewai_patcher import main

sys.exit(main())
