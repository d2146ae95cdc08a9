"""StyleGAN2 / e4e: checkpoint layout, ops against independent formulations, upstream outputs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import convolve2d
from torch.nn import functional as F

from styleid_guidance.jojogan.e4e import E4EInverter, Encoder4Editing
from styleid_guidance.jojogan.stylegan2 import Discriminator, Generator, ModulatedConv2d, fused_leaky_relu, make_kernel, upfirdn2d
from support import DATA

DATA = DATA / "jojogan"


def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def upstream_keys() -> dict:
    return json.loads((DATA / "upstream_keys.json").read_text())


# ---- checkpoint layout (recorded from the upstream architectures, see the fixture's "source") ----
def test_generator_1024_matches_published_layout(upstream_keys):
    with torch.device("meta"):
        g = Generator(1024, 512, 8, channel_multiplier=2)
    assert shapes(g) == upstream_keys["generator_1024"]
    assert g.n_latent == 18 and g.num_layers == 17


def test_discriminator_1024_matches_published_layout(upstream_keys):
    with torch.device("meta"):
        d = Discriminator(1024, channel_multiplier=2)
    assert shapes(d) == upstream_keys["discriminator_1024"]


def test_e4e_encoder_matches_published_layout(upstream_keys):
    with torch.device("meta"):
        e = Encoder4Editing(50, "ir_se", stylegan_size=1024)
    assert shapes(e) == upstream_keys["e4e_encoder_1024"]
    assert e.style_count == 18


# ---- ops against independent formulations ----------------------------------------------------
def upfirdn2d_reference(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """Per-channel numpy/scipy: zero-insert, pad or crop, true 2-D convolution, subsample."""
    out = []
    for ch in x.reshape(-1, *x.shape[-2:]):
        h, w = ch.shape
        z = np.zeros((h * up, w * up), ch.dtype)
        z[::up, ::up] = ch
        p0, p1 = pad
        z = np.pad(z, ((max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
        z = z[max(-p0, 0) : z.shape[0] - max(-p1, 0), max(-p0, 0) : z.shape[1] - max(-p1, 0)]
        out.append(convolve2d(z, k, mode="valid")[::down, ::down])
    return np.stack(out).reshape(*x.shape[:2], *out[0].shape)


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (2, 2)), (2, 1, (1, 1)), (1, 2, (-1, 2)), (2, 2, (1, 2))])
def test_upfirdn2d_matches_reference(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    k = torch.randn(4, 4, dtype=torch.float64)  # asymmetric: catches a missing kernel flip
    ours = upfirdn2d(x, k, up=up, down=down, pad=pad).numpy()
    ref = upfirdn2d_reference(x.numpy(), k.numpy(), up, down, pad)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_fused_leaky_relu():
    x = torch.tensor([[-2.0, 0.5], [1.0, -1.0]]).view(1, 2, 2, 1)
    out = fused_leaky_relu(x, torch.tensor([1.0, -1.0]))
    expected = torch.tensor([[-1.0 * 0.2, 1.5], [0.0, -2.0 * 0.2]]).view(1, 2, 2, 1) * math.sqrt(2)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_matches_per_sample_weights(upsample):
    """Ours modulates activations; the paper formulation modulates and demodulates weights per sample."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, style_dim=4, upsample=upsample).double()
    x, style = torch.randn(3, 6, 8, 8, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    ours = conv(x, style)
    k = make_kernel([1, 3, 3, 1]).double() * 4
    for b in range(3):
        s = conv.modulation(style[b : b + 1])[0]
        w = conv.scale * conv.weight[0] * s.view(1, -1, 1, 1)
        w = w / torch.sqrt(w.pow(2).sum([1, 2, 3], keepdim=True) + 1e-8)
        if upsample:  # transposed conv = zero-insert + full padding + conv with the flipped kernel
            z = torch.zeros(1, 6, 16, 16, dtype=torch.float64)
            z[..., ::2, ::2] = x[b : b + 1]
            y = F.conv2d(F.pad(z[..., :15, :15], [2, 2, 2, 2]), w.flip([2, 3]))
            y = upfirdn2d_reference(y.detach().numpy(), k.numpy(), 1, 1, (1, 1))
            ref = torch.from_numpy(y)
        else:
            ref = F.conv2d(x[b : b + 1], w, padding=1)
        assert ours[b : b + 1].shape == ref.shape
        torch.testing.assert_close(ours[b : b + 1], ref, atol=1e-10, rtol=1e-8)


# ---- same weights, same image as the upstream code ---------------------------------------------
def deterministic_fill(module: torch.nn.Module) -> None:
    """The fill used to record upstream_outputs.pt: sorted key i <- 0.5 * randn(seed i); blur kernels kept."""
    state = module.state_dict()
    for idx, key in enumerate(sorted(state)):
        if not key.endswith("kernel"):
            state[key].copy_(torch.randn(state[key].shape, generator=torch.Generator().manual_seed(idx)) * 0.5)


@torch.no_grad()
def test_outputs_match_upstream_implementation():
    ref = torch.load(DATA / "upstream_outputs.pt", weights_only=True)
    g, d = Generator(32, 64, 2, channel_multiplier=2), Discriminator(32, channel_multiplier=2)
    deterministic_fill(g)
    deterministic_fill(d)
    img, _ = g([ref["wplus"]], input_is_latent=True, randomize_noise=False)
    torch.testing.assert_close(img, ref["image_wplus"], atol=1e-4, rtol=1e-4)
    img_z, latent = g([ref["z1"], ref["z2"]], inject_index=3, truncation=0.7, truncation_latent=ref["truncation_latent"],
                      randomize_noise=False, return_latents=True)
    torch.testing.assert_close(latent, ref["latent_z_mixed"])
    torch.testing.assert_close(img_z, ref["image_z_mixed"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(d(img), ref["d_logits"], atol=1e-4, rtol=1e-4)
    feat1, feat3 = d.features(img, layers=(1, 3))
    torch.testing.assert_close(feat1[:, :8], ref["d_feat1_first8"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(feat3, ref["d_feat3"], atol=1e-4, rtol=1e-4)


def test_generator_forward_conventions():
    torch.manual_seed(0)
    g = Generator(32, 16, 2, channel_multiplier=1, channel_max=16).eval()
    z = torch.randn(2, 16)
    with torch.no_grad():
        img_z, _ = g([z], randomize_noise=False)
        w = g.get_latent(z)
        img_w, none = g([w], input_is_latent=True, randomize_noise=False)
        img_wplus, latent = g([w[:, None].repeat(1, g.n_latent, 1)], input_is_latent=True, randomize_noise=False, return_latents=True)
        noisy_a, _ = g([w], input_is_latent=True)
        noisy_b, _ = g([w], input_is_latent=True)
    assert img_z.shape == (2, 3, 32, 32) and none is None and latent.shape == (2, g.n_latent, 16)
    torch.testing.assert_close(img_z, img_w)
    torch.testing.assert_close(img_w, img_wplus)
    g.conv1.noise.weight.data.fill_(1.0)  # non-zero noise strength: random noise must change the image
    with torch.no_grad():
        noisy_a, _ = g([w], input_is_latent=True)
        noisy_b, _ = g([w], input_is_latent=True)
    assert not torch.allclose(noisy_a, noisy_b)


def test_discriminator_jojogan_features():
    d = Discriminator(64, channel_multiplier=1, channel_max=16)
    assert d.feature_layers() == (1, 3, 4)
    feats = d.features(torch.randn(2, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 8, 4]
    assert d(torch.randn(2, 3, 64, 64)).shape == (2, 1)
    with torch.device("meta"):
        assert Discriminator(1024).feature_layers() == (1, 3, 4, 5)


# ---- e4e -----------------------------------------------------------------------------------------
def test_e4e_progressive_deltas_and_latent_avg():
    torch.manual_seed(0)
    enc = Encoder4Editing(50, "ir_se", stylegan_size=64, style_dim=16, width=8, input_size=64).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        w = enc(x)
    assert w.shape == (2, 10, 16)
    # layer 0 is w0 itself; every later layer is w0 + its own delta
    assert not torch.allclose(w[:, 1], w[:, 0])
    enc.styles[5].linear.weight.data.zero_()
    enc.styles[5].linear.bias.data.zero_()
    with torch.no_grad():
        w2 = enc(x)
    torch.testing.assert_close(w2[:, 5], w2[:, 0])
    torch.testing.assert_close(w2[:, 6], w[:, 6])
    avg = torch.randn(16)
    inverter = E4EInverter(enc, avg)
    out = inverter(torch.rand(1, 3, 128, 128))  # any size: resized to the encoder input
    assert out.shape == (1, 10, 16)
    assert inverter.latent_avg.shape == (10, 16)


def test_jojogan_e4e_input_is_byte_identical_to_upstreams_transform(astronaut):
    """JoJoGAN's e4e_projection: Compose([Resize(256), CenterCrop(256), ToTensor(), Normalize(0.5, 0.5)]) on the
    aligned PIL face, i.e. PIL's bilinear resize in uint8. The encoder must see exactly that tensor."""
    from torchvision import transforms

    from styleid_guidance.jojogan.api import JoJoGAN
    from styleid_guidance.jojogan.e4e import e4e_input

    upstream = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor(),
                                   transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])])
    torch.manual_seed(0)
    generator = Generator(64, 16, 2, channel_multiplier=1, channel_max=16)
    encoder = Encoder4Editing(50, "ir_se", stylegan_size=64, style_dim=16, width=8, input_size=32).eval()
    jj = JoJoGAN(generator, None, E4EInverter(encoder, torch.zeros(16)), device="cpu", detector="mtcnn")
    seen = []
    hook = encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        w = jj.invert(astronaut, align=False)  # the 64-px centre crop, resized to e4e's 32-px input
    finally:
        hook.remove()
    aligned = jj.align(astronaut, align=False)
    want = upstream(aligned).unsqueeze(0)
    assert torch.equal(seen[0], want) and torch.equal(e4e_input(aligned, 32), want)
    # the same as PIL's bilinear in uint8, then [0, 1] → [-1, 1]: no float resampling anywhere
    pil = torch.from_numpy(np.array(aligned.resize((32, 32), Image.BILINEAR))).permute(2, 0, 1).float() / 255
    assert torch.equal(want[0], (pil - 0.5) / 0.5)
    assert w.shape == (1, generator.n_latent, 16)
    # the float (antialiased) path the inverter keeps for tensors differs by up to about one uint8 level
    float_path = torch.nn.functional.interpolate(to_tensor_01(aligned), size=(32, 32), mode="bilinear", antialias=True) * 2 - 1
    assert 0 < (float_path - want).abs().max() < 0.05


def to_tensor_01(image):
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().unsqueeze(0) / 255


def test_channel_table_is_rosinalitys_and_the_cap_only_matters_above_multiplier_2():
    from styleid_guidance.jojogan.stylegan2 import channel_table

    def rosinality(m):  # rosinality/stylegan2-pytorch model.py (and JoJoGAN's copy): no cap
        return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m, 1024: 16 * m}

    for m in (1, 2):
        assert channel_table(m) == channel_table(m, None) == rosinality(m)  # the default cap changes nothing
    assert channel_table(4, None) == rosinality(4)
    assert channel_table(4)[64] == 512 != rosinality(4)[64]  # the documented project cap
    with torch.device("meta"):
        g = Generator(256, 512, 8, channel_multiplier=4, channel_max=None)
        assert g.channels == rosinality(4) and any(1024 in p.shape for p in g.parameters())
