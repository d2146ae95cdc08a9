"""JoJoGAN fine-tuning: style mixing, the identity term, one run per --id_loss, checkpoints, CLIs, errors."""
from __future__ import annotations

import argparse
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from styleid_guidance.jojogan import api as jj_api
from styleid_guidance.jojogan import checkpoints
from styleid_guidance.jojogan.api import JoJoGAN
from styleid_guidance.jojogan.e4e import E4EInverter, Encoder4Editing
from styleid_guidance.jojogan.stylegan2 import Discriminator, Generator
from styleid_guidance.cli import run
from styleid_guidance.jojogan.finetune import jojogan_losses, mix_latents, sample_noise, swap_layers
from styleid_guidance.errors import NoFaceError, StyleIDError


@pytest.fixture(scope="module")
def jj() -> JoJoGAN:
    return JoJoGAN.tiny(size=64, device="cpu", seed=0)


@pytest.fixture(scope="module")
def face(astronaut) -> Image.Image:
    return astronaut


@pytest.fixture(scope="module")
def style_image(face) -> Image.Image:
    """A crude 'style': the face posterised and tinted (real styles are not needed for the mechanics)."""
    arr = np.asarray(face.resize((256, 256))).astype(np.float32)
    arr = (np.round(arr / 64) * 64) * np.array([1.0, 0.6, 0.9])
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def test_swap_layers_and_mixing():
    assert swap_layers(18) == list(range(7, 18))
    assert swap_layers(18, preserve_color=True) == [9, 11, 15, 16, 17]
    assert swap_layers(10, preserve_color=True) == [9]
    ref, w = torch.randn(2, 18, 4), torch.randn(2, 4)
    layers = swap_layers(18)
    torch.testing.assert_close(mix_latents(ref, w, layers, 0.0), ref)
    full = mix_latents(ref, w, layers, 1.0)
    torch.testing.assert_close(full[:, :7], ref[:, :7])
    torch.testing.assert_close(full[:, 7:], w[:, None].expand(2, 11, 4))
    torch.testing.assert_close(mix_latents(ref, w, layers, 0.25)[:, 9], 0.75 * ref[:, 9] + 0.25 * w)


def test_identity_term_pairs_with_frozen_output_and_reaches_generator(jj):
    from styleid_guidance.encoder.model import StyleIDEncoder
    from styleid_guidance.identity_losses import StyleIDLoss

    torch.manual_seed(0)
    frozen, disc = jj.generator, jj.discriminator
    student = copy.deepcopy(frozen).requires_grad_(True)
    loss = StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), crop="center")
    latents = mix_latents(torch.randn(2, frozen.n_latent, frozen.style_dim), frozen.get_latent(torch.randn(2, frozen.style_dim)), swap_layers(frozen.n_latent), 1.0)
    rng = torch.Generator().manual_seed(0)
    noise = sample_noise(frozen, 2, rng)
    real = disc.features(torch.rand(2, 3, 64, 64) * 2 - 1)
    losses = jojogan_losses(student, frozen, disc, real, latents, noise, loss, id_weight=1.0)
    # same weights: each sample matches its own frozen render exactly (a broadcast reference would not)
    assert loss.reference_embedding.shape[0] == 2
    assert losses["identity"].item() == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        for p in student.convs.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    losses = jojogan_losses(student, frozen, disc, real, latents, noise, loss, id_weight=1.0)
    assert losses["identity"].item() > 1e-4
    torch.testing.assert_close(losses["total"], losses["style"] + losses["identity"])
    student.zero_grad()
    losses["identity"].backward()
    grads = [p.grad for p in student.convs.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in frozen.parameters())


@torch.no_grad()
def style_loss_on_fixed_batch(jj: JoJoGAN, generator: Generator, target: torch.Tensor) -> float:
    """The training objective's style term on fixed latents and noise (per-iteration values are noisy)."""
    frozen = jj.generator
    rng = torch.Generator().manual_seed(123)
    w = frozen.get_latent(torch.randn(3, frozen.style_dim, generator=rng))
    latents = mix_latents(jj.inverter(target).expand(3, -1, -1), w, swap_layers(frozen.n_latent), 1.0)
    real = jj.discriminator.features(target.expand(3, -1, -1, -1) * 2 - 1)
    return float(jojogan_losses(generator, frozen, jj.discriminator, real, latents, sample_noise(frozen, 3, rng))["style"])


@pytest.mark.parametrize("id_loss,num_iter", [("none", 3), ("styleid", 3), ("arcface", 2)])
def test_finetune_per_id_loss_lowers_loss(jj, style_image, id_loss, num_iter):
    from styleid_guidance.files.images import to_tensor

    history = []
    before = copy.deepcopy(jj.generator.state_dict())
    g = jj.finetune([style_image], identity_loss=id_loss, id_weight=1.0, num_iter=num_iter, align=False,
                    progress=lambda i, n, losses: history.append((i, n, losses)), show_progress=False)
    assert [h[0] for h in history] == list(range(num_iter)) and history[0][1] == num_iter
    assert ("identity" in history[-1][2]) == (id_loss != "none")
    if id_loss != "none":
        assert history[0][2]["identity"] == pytest.approx(0.0, abs=1e-5)  # same weights at the start
        assert history[-1][2]["identity"] > 0
    target = to_tensor(jj.align(style_image, align=False))
    assert style_loss_on_fixed_batch(jj, g, target) < style_loss_on_fixed_batch(jj, jj.generator, target)
    assert isinstance(g, Generator) and g is not jj.generator
    assert any(not torch.equal(v, g.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, jj.generator.state_dict()[k]) for k, v in before.items())  # the original is untouched


def test_none_never_builds_an_identity_model(jj, style_image, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("an identity model was built for id_loss='none'")

    import styleid_guidance.identity_losses

    monkeypatch.setattr(styleid_guidance.identity_losses, "build_identity_loss", boom)
    monkeypatch.setattr(jj_api, "_tiny_styleid_encoder", boom)
    monkeypatch.setattr(jj_api, "_random_arcface", boom)
    monkeypatch.setitem(jj.identity_models, "styleid", boom)
    monkeypatch.setitem(jj.identity_models, "arcface", boom)
    history = []
    jj.finetune([style_image], identity_loss="none", num_iter=1, align=False, progress=lambda i, n, l: history.append(l), show_progress=False)
    assert history and "identity" not in history[0]


def test_style_checkpoint_round_trip(jj, style_image, tmp_path):
    g = jj.finetune([style_image], identity_loss="none", num_iter=1, align=False, show_progress=False)
    path = jj.save_style(g, tmp_path / "style.pt", id_loss="none")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"g", "jojogan"} and raw["jojogan"]["id_loss"] == "none"
    loaded = jj.load_style(path)
    w = torch.randn(1, g.n_latent, g.style_dim)
    a, _ = g([w], input_is_latent=True, randomize_noise=False)
    b, _ = loaded([w], input_is_latent=True, randomize_noise=False)
    torch.testing.assert_close(a, b)
    # upstream loading path: a rosinality Generator with strict=True
    fresh = Generator(g.size, g.style_dim, g.n_mlp, g.channel_multiplier, channel_max=g.channel_max)
    fresh.load_state_dict(raw["g"], strict=True)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_pretrained_formats_load_strict(tmp_path):
    """Files laid out like stylegan2-ffhq-config-f.pt and e4e_ffhq_encode.pt (small sizes) load and agree."""
    torch.manual_seed(1)
    cfg = dict(size=32, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
    g = Generator(32, 16, 2, 1, channel_max=16)
    d = Discriminator(32, 1, channel_max=16)
    # rosinality training checkpoints also pickle their argparse.Namespace: allowed under weights_only
    extra = {"latent_avg": torch.randn(16), "args": argparse.Namespace(size=32, lr=0.002)}
    torch.save({"g_ema": g.state_dict(), "d": d.state_dict(), **extra}, tmp_path / "sg2.pt")
    g2, d2 = checkpoints.load_stylegan(tmp_path / "sg2.pt", **cfg)
    w = torch.randn(1, 16)
    torch.testing.assert_close(g([w], input_is_latent=True, randomize_noise=False)[0], g2([w], input_is_latent=True, randomize_noise=False)[0])
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(d(x), d2(x))

    enc = Encoder4Editing(50, "ir_se", stylegan_size=32, style_dim=16, width=8, input_size=64).eval()
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()} | {f"decoder.{k}": v for k, v in g.state_dict().items()}
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": 32, "start_from_latent_avg": True, "checkpoint_path": None}
    torch.save({"state_dict": state, "latent_avg": torch.randn(8, 16), "opts": opts}, tmp_path / "e4e.pt")
    inv = checkpoints.load_e4e(tmp_path / "e4e.pt", width=8, style_dim=16, input_size=64)
    img = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(inv(img), E4EInverter(enc, torch.load(tmp_path / "e4e.pt", weights_only=True)["latent_avg"])(img))


def test_checkpoint_errors_are_one_line(tmp_path):
    with pytest.raises(StyleIDError, match=r"missing\.pt: StyleGAN2 checkpoint not found; download it or give its path"):
        checkpoints.load_stylegan(tmp_path / "missing.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(StyleIDError, match=r"notes\.pt: not a loadable e4e checkpoint"):
        checkpoints.load_e4e(tmp_path / "notes.pt")
    torch.save({"state_dict": {"encoder.x": torch.zeros(1)}}, tmp_path / "wrong.pt")
    with pytest.raises(StyleIDError, match=r"wrong\.pt: no 'g_ema' / 'g' entry.*found: state_dict"):
        checkpoints.load_stylegan(tmp_path / "wrong.pt")
    small = Generator(32, 16, 2, 1, channel_max=16)
    torch.save({"g_ema": small.state_dict(), "d": {}}, tmp_path / "small.pt")
    with pytest.raises(StyleIDError, match=r"small\.pt: does not fit the 64-px StyleGAN2 generator.*missing keys"):
        checkpoints.load_stylegan(tmp_path / "small.pt", size=64, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
    with pytest.raises(StyleIDError, match=r"shape mismatches"):
        checkpoints.load_stylegan(tmp_path / "small.pt", size=32, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=32)


def test_bad_arguments(jj, style_image):
    with pytest.raises(StyleIDError, match="alpha"):
        jj.finetune([style_image], identity_loss="none", alpha=1.5, num_iter=1, align=False)
    with pytest.raises(StyleIDError, match="identity_loss must be one of"):
        jj.finetune([style_image], identity_loss="lpips", num_iter=1, align=False)
    with pytest.raises(StyleIDError, match="at least one"):
        jj.finetune([], identity_loss="none", num_iter=1)


def test_cli_train_then_stylize(face, tmp_path, capsys):
    face_path = tmp_path / "astronaut.png"
    face.save(face_path)
    out = tmp_path / "style.pt"
    rc = run(["jojogan", "train", str(face_path), "-o", str(out), "--tiny", "--id_loss", "none", "--num_iter", "2", "--sample_every", "1"])
    assert rc == 0 and out.is_file()
    samples = sorted((tmp_path / "style_samples").glob("*.png"))
    assert [p.name for p in samples] == ["iter_0000.png", "iter_0001.png", "iter_0002.png"]
    assert Image.open(samples[-1]).size == (2 + 66, 2 + 2 * 66)  # 1 column, 2 rows (before / after) of 64 px
    rc = run(["jojogan", "stylize", str(face_path), "--style_ckpt", str(out), "--tiny", "-o", str(tmp_path / "res"), "--side_by_side"])
    assert rc == 0
    result = Image.open(tmp_path / "res" / "astronaut_style.png")
    assert result.size == (128, 64)
    assert np.asarray(result).std() > 1  # an image, not a blank


def test_cli_user_errors(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (128, 128), (200, 200, 200)).save(blank)
    rc = run(["jojogan", "train", str(blank), "-o", str(tmp_path / "s.pt"), "--stylegan_ckpt", str(tmp_path / "nope.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and "--stylegan-ckpt: " in err and "nope.pt: StyleGAN2 checkpoint not found" in err
    assert "Traceback" not in err and err.count("\n") == 1
    rc = run(["jojogan", "train", str(blank), "-o", str(tmp_path / "s.pt"), "--tiny", "--num_iter", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "blank.png: no face found" in err and "--no-align" in err
    assert not (tmp_path / "s.pt").exists()
    rc = run(["jojogan", "stylize", str(blank), "--style_ckpt", str(tmp_path / "none.pt")])
    assert rc == 2 and "none.pt: JoJoGAN style checkpoint not found" in capsys.readouterr().err


def test_no_face_error_from_api(jj):
    with pytest.raises(NoFaceError, match="no face found"):
        jj.finetune([Image.new("RGB", (128, 128), (90, 90, 90))], identity_loss="none", num_iter=1)


def test_cli_saved_latents(jj, face, tmp_path, capsys):
    """--latents (upstream inversion_codes format {'latent': [n_latent, D]}) replaces e4e; counts must match."""
    face_path = tmp_path / "ref.png"
    face.resize((64, 64)).save(face_path)
    torch.save({"latent": torch.randn(jj.generator.n_latent, jj.generator.style_dim)}, tmp_path / "ref_w.pt")
    out = tmp_path / "lat.pt"
    rc = run(["jojogan", "train", str(face_path), "-o", str(out), "--tiny", "--id_loss", "none", "--num_iter", "1", "--no_align",
                     "--sample_every", "0", "--latents", str(tmp_path / "ref_w.pt")])
    assert rc == 0 and out.is_file() and not (tmp_path / "lat_samples").exists()
    rc = run(["jojogan", "train", str(face_path), "-o", str(out), "--tiny", "--latents", str(tmp_path / "ref_w.pt"), str(tmp_path / "ref_w.pt"), "--overwrite"])
    assert rc == 2 and "--latents: got 2 files for 1 style images" in capsys.readouterr().err
    torch.save({"latent": torch.randn(3, 7)}, tmp_path / "bad_w.pt")
    rc = run(["jojogan", "train", str(face_path), "-o", str(out), "--tiny", "--no_align", "--latents", str(tmp_path / "bad_w.pt"), "--overwrite"])
    assert rc == 2 and "bad_w.pt: expected {'latent'" in capsys.readouterr().err
