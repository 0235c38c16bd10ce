"""Ways out of s3prl-ekd for a trained student (see docs/export.md).

- ``hf_format``: the student <-> a ``transformers`` ``HubertModel`` (config and weights, both ways)
- ``hf``: ``s3prl-ekd export-hf`` (the folder: config, safetensors, feature extractor, model card)
- ``hf_card``: that folder's README.md model card
- ``s3prl_distiller``: ``s3prl-ekd export-s3prl`` (s3prl's own ``distiller_local`` format)

The SUPERB hidden-set folder is ``s3prl_ekd.superb.submission.build`` (``export-submission``).
"""
