"""README.md model card of an ``export-hf`` folder (Hugging Face front matter, then what the model is)."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

from s3prl_ekd.io import SAMPLE_RATE


class ResultsFileError(ValueError):
    """A ``--results`` file that is neither the demo's ``results.json`` nor ``collect-results --json``."""


def results_table(path: os.PathLike | str) -> str:
    """A Markdown table from the demo's ``results.json`` or ``collect-results --json`` rows."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ResultsFileError(f"--results {path} cannot be read as JSON: {e}") from None
    if isinstance(data, Mapping) and "rows" in data and "tasks" in data:
        from s3prl_ekd.demo.report import markdown_table

        return markdown_table(data) + "\n"
    if isinstance(data, list) and all(isinstance(r, Mapping) and {"upstream", "task", "value"} <= set(r) for r in data):
        from s3prl_ekd.superb.results import results_markdown

        return results_markdown(data)
    raise ResultsFileError(
        f"--results {path} is neither the demo's results.json (keys 'rows', 'tasks') nor the rows "
        "of `s3prl-ekd collect-results --json` (a list of {upstream, task, value}): pass one of those"
    )


def _batches_text(group_norm: bool) -> str:
    if group_norm:
        return (
            "**Batches of unequal lengths.** Like HuBERT Base in `transformers`, this model takes no\n"
            "`attention_mask` (the feature extractor returns none): the first conv layer's group norm\n"
            "spans the whole padded time axis, so in a zero-padded batch the features of every utterance\n"
            "shorter than the longest change (by about the size of the features themselves), with or\n"
            "without a mask. Run utterances **one at a time, or in batches of equal length** (sort or crop\n"
            "by length); the longest utterance of a padded batch keeps its features."
        )
    return (
        "**Batches of unequal lengths.** This model's conv extractor normalises each frame alone\n"
        "(layer norm), so a zero-padded batch gives every utterance its own features when the\n"
        "`attention_mask` is passed: the feature extractor returns it (`return_attention_mask: true`),\n"
        "pass `**inputs` as above. Without the mask, shorter utterances' features change."
    )


def card_text(info: Mapping[str, Any], folder_name: str, license_id: str, results: Optional[str] = None) -> str:
    """The model card: teachers, scheme, targets, steps, size, loading, differences, license."""
    n = info["num_parameters"]
    layers = info["encoder_layers"]
    step = info["step"]
    teachers = ", ".join(info["teachers"]) or "(not recorded in the checkpoint)"
    targets = "\n".join(
        f"| {t['name']} | {t['op']} | {', '.join(t['sources'])} | {t['dim']} |" for t in info["targets"]
    )
    not_carried = "\n".join(f"- `{k}`: {why}" for k, why in info["not_carried"].items())
    identity = (
        f"\n- **Identity projection:** this student has no projection (its conv width equals its hidden\n"
        f"  size) but `HubertModel` always has one: the folder holds an identity matrix and zero bias\n"
        f"  there ({info['identity_projection']:,} parameters, not counted above; features unchanged)."
        if info.get("identity_projection")
        else ""
    )
    results_part = f"\n## Results\n\n{results}\nFrom `{info['results_file']}`, as given (it may hold rows of other models).\n" if results else ""
    return f"""---
license: {license_id}
library_name: transformers
pipeline_tag: feature-extraction
tags:
- speech
- audio
- hubert
- distilhubert
- knowledge-distillation
- s3prl
---

# Ensemble-distilled DistilHuBERT-style student ({layers}-layer HuBERT)

A {layers}-layer DistilHuBERT-style speech model distilled from an ensemble of self-supervised
teachers with s3prl-ekd (ensemble knowledge distillation, Huang et al., ICASSP 2023,
arXiv 2302.12757), saved as a plain `transformers` `HubertModel`: nothing but `transformers` is
needed to load it (no custom code, no `trust_remote_code`).

- **Parameters:** {n:,} ({n / 1e6:.2f} M), counted as DistilHuBERT reports its 23.49 M.
- **Prediction heads dropped:** the heads that predicted the teachers' layers during
  distillation are not in this folder (as in the paper's downstream use); it holds the body only.{identity}
- **Teachers:** {teachers}
- **Scheme:** {info['scheme']} ({len(info['targets'])} prediction targets, below)
- **Pretraining steps:** {step if step is not None else '(not recorded in the checkpoint)'}
- **Source checkpoint:** `{info['source_checkpoint']}`
- **Input:** 16 kHz mono waveforms, not normalised; one frame per {info['downsample_rate']} samples.

| target | how it is made | teacher layers | dim |
|---|---|---|---|
{targets}

## Use with transformers

```python
import torch
from transformers import AutoFeatureExtractor, AutoModel

extractor = AutoFeatureExtractor.from_pretrained("{folder_name}")
model = AutoModel.from_pretrained("{folder_name}").eval()  # a HubertModel
inputs = extractor(wav, sampling_rate={SAMPLE_RATE}, return_tensors="pt")  # wav: 1-D float array
with torch.no_grad():
    out = model(**inputs, output_hidden_states=True)
layers = out.hidden_states[1:]  # transformer layers 1..{layers}: the student's features
```

**`hidden_states[0]` differs from s3prl's.** `transformers` lists the encoder input *after* the
positional convolution and layer norm as its first hidden state; s3prl's distiller (and
`ekd_student`) lists the projection output *before* them. Layers 1..{layers} are the same tensors
(equal to 1e-4; s3prl-ekd's tests check it).

{_batches_text(info['group_norm'])}

## Use with s3prl

With s3prl-ekd installed, `ekd_student` reads this folder and gives exactly the original
student's features (projection output first, each utterance of a padded batch as if alone):

```bash
python run/run_downstream.py -m train -u ekd_student -k {folder_name} -d asr -c downstream_configs/asr.yaml -n exp
```

Vanilla s3prl 0.4.18 loads it too, through `transformers`: `-u hf_hubert_custom -k {folder_name}`.
That expert pads batches and passes an attention mask, and lists `transformers`' hidden states, so
see the two differences above.

## Settings not in config.json

The student's config has options `HubertConfig` does not hold; none changes the features of an
utterance run alone:

{not_carried}
{results_part}
## License

`{license_id}`. The weights are distilled from the teacher models named above; their own licences
apply as well.

Written by s3prl-ekd {info['s3prl_ekd_version']} (`s3prl-ekd export-hf`).
"""
