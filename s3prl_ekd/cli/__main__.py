"""``python -m s3prl_ekd.cli``."""

import sys

from s3prl_ekd.cli.commands import main

sys.exit(main())
