"""``python -m examples.autogen_patcher``: run the AutoGen patcher example offline."""

import sys

from examples.autogen_patcher.patcher import main

sys.exit(main())
