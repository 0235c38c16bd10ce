"""Load a SUPERB submission folder in a fresh interpreter and dump its features.

Run by ``verify`` as ``python -I probe.py FOLDER WAVES OUT THREADS``: ``-I``
keeps this file's folder and PYTHONPATH off ``sys.path``, and an import hook refuses
``s3prl_ekd``, so the folder can only use what it ships and what its requirements install.
Deliberately imports nothing from s3prl_ekd.
"""

import importlib.abc
import os
import sys


class BlockPackage(importlib.abc.MetaPathFinder):
    """Refuse to import one package (the folder must not depend on it)."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name or fullname.startswith(self.name + "."):
            raise ImportError(
                f"the submission folder imported {fullname}: it must be self-contained "
                "(torch, s3prl and what requirements.txt lists)"
            )
        return None


def main(folder: str, waves_path: str, out_path: str, threads: int) -> int:
    """Run the folder's own ``cli.py validate``, then its expert on the given waves."""
    sys.meta_path.insert(0, BlockPackage("s3prl_ekd"))
    folder = os.path.abspath(folder)
    sys.path.insert(0, folder)
    os.chdir(folder)
    import torch

    torch.set_num_threads(threads)
    import cli  # the folder's cli.py

    rc = cli.main(["validate", "--device", "cpu"])
    if rc:
        return 10 + int(rc)
    from expert import UpstreamExpert

    upstream = UpstreamExpert(ckpt="./model.pt").eval()
    batches = torch.load(waves_path, weights_only=True)
    result = {"hidden_states": [], "rates": {}}
    with torch.no_grad():
        for wavs in batches:
            result["hidden_states"].append([h.clone() for h in upstream(wavs)["hidden_states"]])
    result["rates"] = {k: upstream.get_downsample_rates(k) for k in cli.TASKS}
    result["s3prl_ekd_imported"] = any(m.split(".")[0] == "s3prl_ekd" for m in sys.modules)
    torch.save(result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
