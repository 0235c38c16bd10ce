"""s3prl upstreams this package adds."""
