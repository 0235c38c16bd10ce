#!/usr/bin/env python
"""Exact padding in the conv extractor: per-length calls vs one masked call vs s3prl's plain call.

    python bench/conv_extractor.py --batch-size 4 --threads 2
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from s3prl_ekd.bench.conv_extractor import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
