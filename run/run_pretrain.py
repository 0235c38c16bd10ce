#!/usr/bin/env python3
"""s3prl's ``run_pretrain.py`` with the ensemble-distillation expert known to it as ``-u ekd``.

    python run/run_pretrain.py -u ekd -g upstream_configs/ekd_multihead.yaml -n exp
    python run/run_pretrain.py -e result/pretrain/exp/states-10000.ckpt           # resume
    torchrun --nproc_per_node 8 run/run_pretrain.py -u ekd -g ... -n exp          # DDP

Makes our names known to s3prl (``s3prl_ekd.pretrain.launch``), then runs s3prl's own ``main()``
(same flags, same Runner), or under torchrun the DDP twin of that Runner.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from s3prl_ekd.pretrain.launch import main  # noqa: E402

if __name__ == "__main__":
    main()
