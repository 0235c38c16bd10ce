#!/usr/bin/env python
"""Pretraining throughput: s3prl-style K-teacher steps against ours. Same as ``s3prl-ekd bench``.

    python bench/pretrain_throughput.py --help
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from s3prl_ekd.bench.command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
