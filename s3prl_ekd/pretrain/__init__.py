"""Pretraining of the student: the s3prl pretrain expert (``-u ekd``), its data, a DDP runner."""
