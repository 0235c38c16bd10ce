"""Frozen teachers: loading (s3prl hub, local and fairseq files), speed-ups, the target cache, tiny teachers."""
