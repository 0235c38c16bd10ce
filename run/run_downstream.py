#!/usr/bin/env python3
"""s3prl's ``run_downstream.py``, with s3prl-ekd's upstreams known to it.

    python run/run_downstream.py -m train -u ekd_student -k student.ckpt -d asr \
        -c downstream_configs/asr.yaml -n exp

Registers our names, then calls s3prl's own ``main()`` unchanged (same flags, same runner),
with every checkpoint it reads read by s3prl-ekd's checked reader (``load_guard``).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from s3prl_ekd import register  # noqa: E402

if __name__ == "__main__":
    register()
    from s3prl import run_downstream

    from s3prl_ekd.load_guard import run_guarded

    # every file s3prl reads (-k of any upstream, -e) goes through our checked reader
    run_guarded(run_downstream.main, "run_downstream.py")
