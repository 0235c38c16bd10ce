"""Pretraining throughput benchmark: s3prl-style teacher calls against the project's training path."""
