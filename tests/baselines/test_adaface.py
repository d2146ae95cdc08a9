"""AdaFace IR backbones and the CPU-safe loader of the public Lightning .ckpt files."""
from __future__ import annotations

import argparse
import collections
import fractions
import sys
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from styleid_guidance.baselines import adaface
from styleid_guidance.baselines.adaface import (AdaFaceIR, architecture_from_state_dict, find_weights, load_adaface,
                                                read_checkpoint)
from styleid_guidance.errors import StyleIDError
from support import DATA

KEYS_FILE = DATA / "adaface_ir101_state_dict_keys.txt"
TINY = dict(stages=(1, 2, 1, 1), widths=(8, 16, 24, 32), embedding_dim=16)  # widths grow per stage, as in every IR net


def test_ir101_has_the_released_state_dict_layout():
    """Names, shapes and order of the 917 entries are those of the released IR-101 (dumped from upstream)."""
    with torch.device("meta"):
        model = AdaFaceIR()
    released = [tuple(line.split("\t")[:2]) for line in KEYS_FILE.read_text().splitlines()]
    assert [(k, str(tuple(v.shape))) for k, v in model.state_dict().items()] == released
    assert len(released) == 917
    assert sum(p.numel() for p in model.parameters()) == 65_150_912
    assert architecture_from_state_dict(model.state_dict()) == {
        "stages": (3, 13, 30, 3), "widths": (64, 128, 256, 512), "embedding_dim": 512, "input_size": 112}
    # the conv shortcuts sit exactly where the width changes; the last BN has no affine weights
    shortcuts = sorted({int(k.split(".")[1]) for k in model.state_dict() if "shortcut_layer.0" in k})
    assert shortcuts == [3, 16, 46]
    assert "output_layer.4.weight" not in model.state_dict()


@pytest.mark.parametrize("arch", ["ir_18", "ir_50"])
def test_architecture_is_read_off_the_shapes(arch):
    with torch.device("meta"):
        model = AdaFaceIR(stages=adaface.STAGES[arch])
    assert architecture_from_state_dict(model.state_dict())["stages"] == adaface.STAGES[arch]


def _tiny_model(seed: int = 0) -> AdaFaceIR:
    torch.manual_seed(seed)
    model = AdaFaceIR(**TINY)
    # non-trivial BN statistics, so a loader that dropped buffers would change the output
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _lightning_checkpoint(model: AdaFaceIR, extra: object = None) -> dict:
    """What a PyTorch-Lightning 1.4 trainer of AdaFace saves: prefixed backbone, margin head, optimizer and
    scheduler state, a Namespace of hyper-parameters with numpy values, and callback states keyed by the
    callback class (emulated: pytorch_lightning is not installed)."""
    state = collections.OrderedDict((f"model.{k}", v) for k, v in model.state_dict().items())
    state["head.kernel"] = torch.randn(TINY["embedding_dim"], 7)
    state["head.t"], state["head.batch_mean"], state["head.batch_std"] = torch.zeros(1), torch.ones(1) * 20, torch.ones(1) * 100
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    p.sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[12, 20, 24], gamma=0.1)
    ckpt = {
        "epoch": 26, "global_step": 1234, "pytorch-lightning_version": "1.4.4",
        "state_dict": state,
        "optimizer_states": [opt.state_dict()], "lr_schedulers": [sched.state_dict()],
        "hparams_name": "kwargs",
        "hyper_parameters": argparse.Namespace(arch="ir_101", m=0.4, best=np.float64(0.97), milestones=np.array([12, 20, 24])),
    }
    if extra is not None:
        ckpt["extra"] = extra
    return ckpt


def _save_with_callback_class(ckpt: dict, path: Path) -> None:
    name = "pytorch_lightning.callbacks.model_checkpoint"
    fake = types.ModuleType(name)
    callback = type("ModelCheckpoint", (), {"__module__": name})
    fake.ModelCheckpoint = callback
    parents = ("pytorch_lightning", "pytorch_lightning.callbacks")
    sys.modules.update({name: fake, **{p: types.ModuleType(p) for p in parents}})
    try:
        torch.save({**ckpt, "callbacks": {callback: {"monitor": "val_acc", "best_model_score": torch.tensor(0.97)}}}, path)
    finally:
        for m in (name, *parents):
            del sys.modules[m]


def test_lightning_checkpoint_loads_and_embeds_like_the_source_model(tmp_path):
    source = _tiny_model()
    path = tmp_path / "adaface_ir101_webface4m.ckpt"
    _save_with_callback_class(_lightning_checkpoint(source), path)
    with pytest.raises(Exception):  # the plain weights-only load refuses it: our allow-list is what admits it
        torch.load(path, weights_only=True)
    model = load_adaface(path)
    assert not model.training and model.input_size == 112 and model.embedding_dim == TINY["embedding_dim"]
    assert set(model.state_dict()) == set(source.state_dict())  # head.* dropped, model. stripped
    x = torch.rand(3, 3, 112, 112)
    with torch.no_grad():
        z, norm = model(x * 2 - 1, return_norm=True)
        assert torch.allclose(z, source(x * 2 - 1), atol=1e-6)
        assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5) and norm.shape == (3, 1) and (norm > 0).all()
        # embed_rgb: RGB [0,1] → BGR, (x - 0.5) / 0.5
        assert torch.allclose(model.embed_rgb(x), model(x[:, [2, 1, 0]] * 2 - 1), atol=1e-6)
        assert not torch.allclose(model.embed_rgb(x), model(x * 2 - 1), atol=1e-3)
    # the folder form finds the known file name
    assert find_weights(tmp_path) == path


def test_bare_state_dict_loads(tmp_path):
    source = _tiny_model(1)
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "a.ckpt")
    torch.save(source.state_dict(), tmp_path / "b.pt")
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        for name in ("a.ckpt", "b.pt"):
            assert torch.allclose(load_adaface(tmp_path / name).embed_rgb(x), source.embed_rgb(x), atol=1e-6)


def test_extra_pickled_object_is_refused_unless_allow_listed(tmp_path):
    path = tmp_path / "extra.ckpt"
    torch.save(_lightning_checkpoint(_tiny_model(), extra=fractions.Fraction(1, 3)), path)
    with pytest.raises(StyleIDError) as err:
        load_adaface(path)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "fractions.Fraction" in message and "refused" in message
    assert "weights_only" not in message and "add_safe_globals" not in message
    model = load_adaface(path, extra_safe_globals=[fractions.Fraction])
    assert model.embedding_dim == TINY["embedding_dim"]
    assert read_checkpoint(path, extra_safe_globals=[fractions.Fraction])["extra"] == fractions.Fraction(1, 3)


def test_numpy1_pickles_load_through_the_alias(tmp_path):
    """numpy 1 wrote numpy.core.multiarray.*; the allow-list names both spellings."""
    new, old = tmp_path / "np2.ckpt", tmp_path / "np1.ckpt"
    torch.save(_lightning_checkpoint(_tiny_model()), new)
    with zipfile.ZipFile(new) as zin, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item, data)
    assert float(read_checkpoint(old)["hyper_parameters"].best) == pytest.approx(0.97)


def test_damaged_and_wrong_checkpoints_are_one_line_errors(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in _tiny_model().state_dict().items()}}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:5000])
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    wrong = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": {"model.conv.weight": torch.zeros(3)}}, wrong)
    partial = tmp_path / "partial.ckpt"
    sd = {f"model.{k}": v for k, v in _tiny_model().state_dict().items() if not k.startswith("body.1.")}
    torch.save({"state_dict": sd}, partial)
    for path, message in ((truncated, "not a readable PyTorch checkpoint"), (empty, "not a readable PyTorch checkpoint"),
                          (wrong, "not an AdaFace IR checkpoint"), (partial, "not an AdaFace IR checkpoint"),
                          (tmp_path / "nope.ckpt", "no such AdaFace checkpoint")):
        with pytest.raises(StyleIDError, match=message) as err:
            load_adaface(path)
        assert len(str(err.value).splitlines()) == 1 and str(path) in str(err.value)


def test_missing_weights_say_where_to_put_them_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(adaface, "ADAFACE_HOME", tmp_path / "home")
    start = time.perf_counter()
    with pytest.raises(StyleIDError) as err:
        load_adaface()
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(tmp_path / "home") in message and "adaface_ir101_webface4m.ckpt" in message
    (tmp_path / "two").mkdir()
    for name in ("x.ckpt", "y.ckpt"):
        (tmp_path / "two" / name).write_bytes(b"")
    with pytest.raises(StyleIDError, match="2 checkpoints"):
        find_weights(tmp_path / "two")
