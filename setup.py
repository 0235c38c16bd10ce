"""Packaging: metadata and dependencies are in setup.cfg; this file ships the root config folders.

``upstream_configs/`` and ``downstream_configs/`` stay at the project's root, where s3prl users
look for them, and go into the wheel as package data of ``s3prl_ekd`` (``s3prl_ekd/upstream_configs``,
``s3prl_ekd/downstream_configs``) through a ``package_dir`` mapping: one copy in the tree.
"""

from setuptools import find_packages, setup

CONFIG_FOLDERS = {"s3prl_ekd.upstream_configs": "upstream_configs", "s3prl_ekd.downstream_configs": "downstream_configs"}

setup(
    packages=find_packages(include=["s3prl_ekd", "s3prl_ekd.*"]) + list(CONFIG_FOLDERS),
    package_dir=CONFIG_FOLDERS,
    package_data={
        "s3prl_ekd": ["superb/submission/files/*.py", "corpus/words.txt", "demo/demo.yaml"],
        "s3prl_ekd.upstream_configs": ["*.yaml"],
        "s3prl_ekd.downstream_configs": ["*.yaml", "vocab/*", "dict/*"],
    },
)
