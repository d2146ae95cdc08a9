"""Identity losses: one interface, differentiable from pixels, cached reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from styleid_guidance import ArcFaceLoss, CLIPLoss, StyleIDLoss, build_identity_loss
from styleid_guidance.baselines.arcface import build_arcface_backbone, load_arcface_backbone
from styleid_guidance.errors import NoFaceError, StyleIDError


def _as_tensor(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img)).permute(2, 0, 1).float()[None] / 255


@pytest.mark.parametrize("crop", ["center", "none", "face"])
def test_styleid_loss_gradient_flows_from_pixels(tiny_encoder, astronaut, crop):
    loss_fn = StyleIDLoss(tiny_encoder, reference=astronaut, crop=crop, detector="mtcnn")
    assert loss_fn.has_reference and loss_fn.reference_embedding.shape == (1, 32)
    x = torch.rand(2, 3, 128, 128, requires_grad=True)
    loss = loss_fn(x)
    assert loss.shape == (2,) and torch.all((loss >= 0) & (loss <= 2))
    loss.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # encoder weights never collect gradients from a guidance loss
    assert all(p.grad is None for p in tiny_encoder.parameters())
    # the reference against itself is (numerically) a perfect match, at any resolution
    ref = _as_tensor(astronaut)
    assert float(loss_fn(ref)) == pytest.approx(0.0, abs=1e-5)
    half = torch.nn.functional.interpolate(ref, size=(256, 256), mode="bilinear", antialias=True)
    assert float(loss_fn(half)) < float(loss_fn(torch.rand(1, 3, 256, 256)))


def test_gradient_descent_on_pixels_lowers_the_loss(tiny_encoder, astronaut):
    loss_fn = StyleIDLoss(tiny_encoder, reference=astronaut, crop="center")
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    start = float(loss_fn(x))
    opt = torch.optim.Adam([x], lr=0.02)
    for _ in range(15):
        opt.zero_grad()
        loss_fn(x).sum().backward()
        opt.step()
        x.data.clamp_(0, 1)
    assert float(loss_fn(x)) < start - 0.01


def test_reference_broadcasts_or_pairs(tiny_encoder, astronaut, camera):
    one = StyleIDLoss(tiny_encoder, reference=astronaut, crop="center")
    pair = StyleIDLoss(tiny_encoder, reference=[astronaut, camera], crop="center")
    x = torch.cat([_as_tensor(astronaut), _as_tensor(camera)])
    assert one(x).shape == (2,)
    assert torch.allclose(pair(x), torch.zeros(2), atol=1e-5)
    with pytest.raises(StyleIDError, match="reference faces for a batch of 3"):
        pair(torch.rand(3, 3, 64, 64))
    with pytest.raises(StyleIDError, match="no reference"):
        StyleIDLoss(tiny_encoder, crop="center")(x)


@pytest.mark.parametrize("crop", ["center", "face"])
def test_arcface_baseline_shares_the_interface(astronaut, crop):
    loss_fn = build_identity_loss("arcface", reference=astronaut, model=build_arcface_backbone(), crop=crop, detector="mtcnn", device="cpu")
    assert isinstance(loss_fn, ArcFaceLoss) and loss_fn.reference_embedding.shape == (1, 512)
    x = torch.rand(1, 3, 256, 256, requires_grad=True)
    loss_fn(x).sum().backward()
    assert x.grad.abs().sum() > 0
    loss_fn.train()  # BatchNorm must stay in inference mode inside a training loop
    assert not loss_fn.model.training
    assert float(loss_fn(_as_tensor(astronaut))) == pytest.approx(0.0, abs=1e-5)


def test_build_identity_loss_by_name(tiny_encoder, astronaut):
    assert build_identity_loss("none") is None
    assert isinstance(build_identity_loss("styleid", model=tiny_encoder, device="cpu", crop="center"), StyleIDLoss)
    assert isinstance(build_identity_loss("clip", model=tiny_encoder, device="cpu", crop="center"), CLIPLoss)
    with pytest.raises(StyleIDError, match="one of styleid, arcface, clip, none"):
        build_identity_loss("facenet")
    with pytest.raises(StyleIDError, match="crop must be one of"):
        build_identity_loss("styleid", model=tiny_encoder, crop="square")


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(StyleIDError, match="not available.*local copy") as err:
        build_identity_loss("styleid", model="kwanY/styleid", device="cpu", crop="center")
    assert "--" not in str(err.value)  # a Python caller passed no flag; the CLI adds flag names
    with pytest.raises(StyleIDError, match="ArcFace weights not found"):
        load_arcface_backbone(tmp_path / "nope.pth")
    with pytest.raises(StyleIDError, match="downloads are off"):
        load_arcface_backbone(model_rootpath=str(tmp_path))


def test_arcface_checkpoint_round_trip_and_wrong_checkpoint(tmp_path):
    model = build_arcface_backbone()
    torch.save(model.state_dict(), tmp_path / "recognition_arcface_ir_se50.pth")
    loaded = load_arcface_backbone(tmp_path)
    x = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    torch.save({"layer.weight": torch.zeros(2)}, tmp_path / "wrong.pth")
    with pytest.raises(StyleIDError, match="not an IR-SE50"):
        load_arcface_backbone(tmp_path / "wrong.pth")


def test_face_crop_without_a_face_suggests_center(tiny_encoder):
    blank = np.full((256, 256, 3), 200, np.uint8)
    with pytest.raises(NoFaceError, match="crop='center'") as err:
        StyleIDLoss(tiny_encoder, reference=blank, crop="face", detector="mtcnn")
    assert "--crop center" in err.value.for_cli()  # what `styleid verify` prints


def test_nan_images_never_give_a_similarity(tiny_encoder, astronaut):
    loss_fn = StyleIDLoss(tiny_encoder, reference=astronaut, crop="center")
    x = torch.rand(1, 3, 64, 64)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(StyleIDError, match="NaN"):
        loss_fn(x)
