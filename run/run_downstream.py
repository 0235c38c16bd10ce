#!/usr/bin/env python3
"""s3prl's ``run_downstream.py``, with s3prl-ekd's upstreams known to it.

    python run/run_downstream.py -m train -u ekd_student -k student.ckpt -d asr \
        -c downstream_configs/asr.yaml -n exp

The same as ``s3prl-ekd downstream ...``: registers our names, then calls s3prl's own ``main()``
unchanged (same flags, same runner); ``-c`` also takes a shipped config's name (``-c asr``).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from s3prl_ekd.superb.launch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
