"""Reading configs: value checks, the conv-layer grammar, shipped config files."""
