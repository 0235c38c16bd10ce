"""Frozen-feature linear probes with bootstrap intervals: a low-variance reading of what an upstream knows.

    from s3prl_ekd.probe import ProbeSettings, UpstreamSpec, read_probe_corpus, run_probes
    corpus = read_probe_corpus("data/corpus", max_train_frames=20000, seed=0)
    probes = run_probes({"fbank": [UpstreamSpec("fbank", "fbank")]}, corpus, ProbeSettings())

``data`` reads the items (phones at 20 ms positions, speakers, emotions) from the corpus's
layouts; ``features`` extracts and caches each upstream's frozen features; ``linear`` holds the
scikit-learn probes and the protocols that choose their regularisation on held-out data only;
``stats`` the bootstrap; ``evaluate`` ties them together; ``report`` writes the table and the
reading. ``s3prl-ekd probe`` is the command line.
"""

from s3prl_ekd.probe.data import ProbeCorpus, UpstreamSpec, read_probe_corpus
from s3prl_ekd.probe.evaluate import TASKS, ProbeSettings, run_probes

__all__ = ["ProbeCorpus", "read_probe_corpus", "TASKS", "ProbeSettings", "run_probes", "UpstreamSpec"]
