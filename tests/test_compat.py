"""s3prl_ekd.s3prl_compat: s3prl's harness on torch 2.8 and the 0.4.18 wheel, nothing installed edited."""

import argparse
import collections
import importlib
import os

import s3prl
import torch

from s3prl_ekd import s3prl_compat


def test_runner_checkpoints_load_weights_only(tmp_path):
    s3prl_compat.apply()
    # what s3prl's runner saves: its argparse Namespace, the config, states, the step
    state = {"Args": argparse.Namespace(expdir="x", upstream="fbank", local_rank=None),
             "Config": {"runner": {"total_steps": 3}}, "Downstream": {"w": torch.ones(2)}, "Step": 3}
    path = tmp_path / "states-3.ckpt"
    torch.save(state, path)
    loaded = torch.load(path, map_location="cpu")  # s3prl's own call: weights_only by default
    assert loaded["Args"].upstream == "fbank" and loaded["Step"] == 3
    assert torch.equal(loaded["Downstream"]["w"], torch.ones(2))


def test_ctc_corpus_package_is_provided():
    s3prl_compat.apply()
    s3prl_compat.apply()  # idempotent
    module = importlib.import_module("s3prl.downstream.ctc.corpus.libriphone")
    from s3prl_ekd.superb.libriphone import LibriPhoneDataset

    assert module.LibriPhoneDataset is LibriPhoneDataset
    # s3prl's own factory finds it by the relative import it uses
    from s3prl.downstream.ctc import data

    assert data.create_dataset.__module__ == "s3prl.downstream.ctc.data"
    site = os.path.dirname(s3prl.__file__)
    assert not os.path.exists(os.path.join(site, "downstream", "ctc", "corpus"))  # nothing written


def test_voxceleb_cache_leaves_site_packages():
    s3prl_compat.apply()
    from s3prl.downstream.voxceleb1 import dataset

    assert not os.path.abspath(dataset.CACHE_PATH).startswith(os.path.dirname(s3prl.__file__))
    assert os.path.isdir(dataset.CACHE_PATH)


def test_loads_elsewhere_in_the_process_keep_the_runner_checkpoint_fix(tmp_path):
    """torch's ``safe_globals`` context removes its classes on exit even when they were allowed
    before: one ``safe_load`` (or a pretraining run) then broke s3prl's own loads of runner
    checkpoints for the rest of the process, so the suite's result depended on test order."""
    from s3prl_ekd.io.atomic import atomic_save
    from s3prl_ekd.io.checkpoint import safe_load
    from s3prl_ekd.io.safe_globals import allowed_globals

    s3prl_compat.apply()
    path = tmp_path / "states-3.ckpt"
    atomic_save({"Args": argparse.Namespace(expdir="x"), "Step": 3}, path)
    assert safe_load(path)["Step"] == 3
    with allowed_globals([argparse.Namespace, collections.OrderedDict]):
        pass
    assert torch.load(path, map_location="cpu")["Args"].expdir == "x"  # s3prl's own weights-only call
    assert collections.OrderedDict not in torch.serialization.get_safe_globals()  # only what it added is gone


def test_version_check_names_the_expected_and_installed_versions(monkeypatch):
    import pytest

    assert s3prl_compat.check_version() == "0.4.18"
    monkeypatch.setattr(s3prl, "__version__", "0.5.0")
    expected = r"made for s3prl 0\.4\.18, but s3prl 0\.5\.0 is installed: install s3prl==0\.4\.18"
    with pytest.warns(RuntimeWarning, match=expected):
        assert s3prl_compat.check_version() == "0.5.0"
    with pytest.raises(s3prl_compat.S3prlVersionError, match=expected):
        s3prl_compat.check_version(strict=True)
