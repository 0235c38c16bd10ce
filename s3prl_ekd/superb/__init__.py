"""SUPERB: mini task runs through s3prl's runner, results, the hidden-set submission folder."""
