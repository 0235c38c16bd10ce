"""Load an exported student in a fresh interpreter that cannot import s3prl_ekd; dump its features.

``python -I export_probe.py hf FOLDER WAVES OUT``: ``transformers`` alone (s3prl blocked too):
AutoModel + AutoFeatureExtractor, each wave alone, then all waves as one padded batch with and
without the attention mask. ``python -I export_probe.py distiller CKPT WAVES OUT``: vanilla
s3prl's ``distiller_local``, each wave alone, then all as one batch. Imports nothing from s3prl_ekd.
"""

import importlib.abc
import sys


class Block(importlib.abc.MetaPathFinder):
    """Refuse to import the named packages."""

    def __init__(self, *names):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ImportError(f"{fullname} is blocked in this probe")
        return None


def probe_hf(folder, wavs):
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    model.eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    out = {"class": type(model).__name__, "extractor": type(extractor).__name__, "missing": info["missing_keys"],
           "unexpected": info["unexpected_keys"], "alone": []}
    arrays = [w.numpy() for w in wavs]
    with torch.no_grad():
        for a in arrays:
            inputs = extractor(a, sampling_rate=16000, return_tensors="pt")
            out["input_equal"] = bool(torch.equal(inputs["input_values"][0], torch.from_numpy(a)))
            out["alone"].append([h[0] for h in model(**inputs, output_hidden_states=True).hidden_states])
        batch = extractor(arrays, sampling_rate=16000, return_tensors="pt", padding=True)
        out["batch_keys"] = sorted(batch.keys())
        out["padded"] = list(model(batch["input_values"], output_hidden_states=True).hidden_states)
        mask = torch.zeros(batch["input_values"].shape, dtype=torch.long)
        for i, a in enumerate(arrays):
            mask[i, : len(a)] = 1
        out["padded_mask"] = list(model(batch["input_values"], attention_mask=mask, output_hidden_states=True).hidden_states)
    return out


def probe_distiller(ckpt, wavs):
    import s3prl.hub as hub
    import torch

    upstream = hub.distiller_local(ckpt=ckpt).eval()
    with torch.no_grad():
        alone = [[h[0] for h in upstream([w])["hidden_states"]] for w in wavs]
        padded = list(upstream(list(wavs))["hidden_states"])
    return {"alone": alone, "padded": padded, "rate": upstream.get_downsample_rates("hidden_states")}


def main(kind, path, waves_path, out_path):
    blocked = ("s3prl_ekd", "s3prl") if kind == "hf" else ("s3prl_ekd",)
    sys.meta_path.insert(0, Block(*blocked))
    import torch

    torch.set_num_threads(1)
    wavs = torch.load(waves_path, weights_only=True)
    result = probe_hf(path, wavs) if kind == "hf" else probe_distiller(path, wavs)
    result["imported"] = sorted({m.split(".")[0] for m in sys.modules} & {"s3prl_ekd", "s3prl"})
    torch.save(result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
