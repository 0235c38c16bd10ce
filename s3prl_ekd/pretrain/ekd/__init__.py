"""The ``-u ekd`` pretraining expert in s3prl's layout: ``pretrain_expert``, ``dataset``, config, distortions."""
