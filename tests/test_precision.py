"""Compute precision: what "auto" picks (CPU flags and CUDA mocked), and that bf16 paths stay close to fp32.

bf16 here runs on tiny models only: on a CPU without AMX / AVX512-BF16 torch emulates it (slow, still correct).
"""
from __future__ import annotations

import types
import warnings

import pytest
import torch

from styleid_guidance import StyleIDEncoder, StyleIDLoss, build_identity_loss, devices
from styleid_guidance.errors import StyleIDError

pytestmark = pytest.mark.filterwarnings("ignore:precision bf16 on cpu:RuntimeWarning")


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv(devices.PRECISION_ENV, raising=False)


@pytest.fixture
def encoder():
    return StyleIDEncoder.from_pretrained("test-tiny").eval()


def _cpu(monkeypatch, **flags):
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: {"architecture": "x86_64", **flags})


# ---------------------------------------------------------------------- what auto picks
@pytest.mark.parametrize("flags, expected", [
    ({}, "fp32"),                                        # AVX2-only x86: bf16 would be emulated
    ({"avx512_f": True, "avx512_vnni": True}, "fp32"),   # AVX-512 without its BF16 extension
    ({"avx512_bf16": True}, "bf16"),
    ({"amx_bf16": True, "amx_tile": True}, "bf16"),
])
def test_auto_on_cpu_follows_the_bf16_instructions(monkeypatch, flags, expected):
    _cpu(monkeypatch, **flags)
    assert devices.auto_precision("cpu") == expected
    p = devices.resolve_precision("auto", "cpu")
    assert p.name == expected and p.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[expected]


def test_auto_on_arm_needs_the_bf16_extension(monkeypatch):
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: {"architecture": "aarch64", "bf16": False, "neon": True})
    assert devices.auto_precision("cpu") == "fp32"
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: {"architecture": "aarch64", "bf16": True})
    assert devices.auto_precision("cpu") == "bf16"


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp32"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_on_cuda_needs_ampere_or_newer(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert devices.auto_precision("cuda") == expected
    assert devices.auto_precision("mps") == "fp32"


def test_this_machine_is_detected_not_assumed():
    caps = dict(torch.cpu.get_capabilities())
    native = bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    assert devices.cpu_bf16_native() == native
    assert devices.auto_precision("cpu") == ("bf16" if native else "fp32")


def test_explicit_choices_env_override_and_bad_values(monkeypatch):
    _cpu(monkeypatch)
    assert devices.resolve_precision(None, "cpu").name == "fp32"
    assert devices.resolve_precision("fp32", "cpu").autocast().__class__.__name__ == "nullcontext"
    monkeypatch.setenv(devices.PRECISION_ENV, "bf16")
    assert devices.auto_precision("cpu") == "bf16"
    monkeypatch.setenv(devices.PRECISION_ENV, "fp8")
    with pytest.raises(StyleIDError, match="STYLEID_PRECISION"):
        devices.auto_precision("cpu")
    with pytest.raises(StyleIDError, match="precision must be one of"):
        devices.resolve_precision("half", "cpu")


def test_emulated_bf16_is_allowed_but_warned_once(monkeypatch):
    _cpu(monkeypatch)
    monkeypatch.setattr(devices, "_warned", set())
    with pytest.warns(RuntimeWarning, match="emulates"):
        assert devices.resolve_precision("bf16", "cpu").name == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        devices.resolve_precision("bf16", "cpu")  # once is enough


def test_fp32_adds_no_autocast_of_its_own_and_bf16_does():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    assert (a @ b).dtype == torch.float32
    with devices.resolve_precision("fp32", "cpu").autocast():
        assert (a @ b).dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):  # an enclosing autocast (accelerate's) still applies
            with devices.resolve_precision("fp32", "cpu").autocast():
                assert (a @ b).dtype == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with devices.resolve_precision("bf16", "cpu").autocast():
            assert (a @ b).dtype == torch.bfloat16


# ---------------------------------------------------------------------- bf16 stays close to fp32

def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def test_encoder_bf16_embeddings_match_fp32(encoder):
    x = torch.rand(6, 3, 90, 70, generator=torch.Generator().manual_seed(1))
    z32 = encoder.embed(x, crop="center")
    z16 = encoder.embed(x, crop="center", precision="bf16")
    assert z16.dtype == torch.float32 and z16.shape == z32.shape
    assert torch.allclose(z16.norm(dim=-1), torch.ones(6), atol=1e-5)  # normalised in fp32
    assert _cos(z16, z32).min() >= 0.999
    assert not torch.equal(z16, z32)  # it really ran in bf16
    assert all(p.dtype == torch.float32 for p in encoder.parameters())  # weights (and exports) stay fp32
    encoder.precision = "bf16"  # the instance default is what embed uses when the call does not say
    assert torch.equal(encoder.embed(x, crop="center"), z16)


def test_encoder_bf16_on_files_matches_fp32(encoder, tmp_path):
    from PIL import Image

    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray((torch.rand(80 + 10 * i, 96, 3) * 255).byte().numpy()).save(p)
        paths.append(str(p))
    z32 = encoder.embed(paths, crop="center")
    z16 = encoder.embed(paths, crop="center", precision="bf16")
    assert _cos(z16, z32).min() >= 0.999


def test_identity_loss_bf16_value_and_gradient_match_fp32(encoder):
    gen = torch.Generator().manual_seed(2)
    ref, images = torch.rand(1, 3, 64, 64, generator=gen), torch.rand(3, 3, 64, 64, generator=gen)
    results = {}
    for precision in ("fp32", "bf16"):
        loss = StyleIDLoss(encoder, reference=ref, crop="center", precision=precision)
        x = images.clone().requires_grad_(True)
        value = loss(x)
        value.sum().backward()
        results[precision] = (value.detach(), x.grad.flatten(1))
        assert value.dtype == torch.float32  # reduced in fp32
    (v32, g32), (v16, g16) = results["fp32"], results["bf16"]
    assert torch.allclose(v16, v32, atol=2e-3)
    assert _cos(g16, g32).min() >= 0.99


def test_loss_precision_default_is_fp32_and_using_precision_restores(encoder):
    loss = build_identity_loss("styleid", torch.rand(1, 3, 64, 64), model=encoder, crop="center", device="cpu")
    assert loss.precision is None  # scores are fp32 unless a guidance caller picks
    with loss.using_precision("bf16"):
        assert loss.precision == "bf16"
    assert loss.precision is None
    with pytest.raises(StyleIDError):
        build_identity_loss("styleid", model=encoder, device="cpu", precision="int8")


def test_auroc_is_unchanged_in_bf16_on_smoke_pairs(encoder, tmp_path):
    from styleid_guidance.eval import evaluate_encoder
    from styleid_guidance.tiny.smoke_data import make_smoke_dataset

    paths = make_smoke_dataset(tmp_path / "smoke", 2, 6, [2, 6], 64, 0)
    reports = {}
    for precision in ("fp32", "bf16"):
        encoder.precision = precision
        reports[precision] = evaluate_encoder(encoder, paths["pairs"], crop="center")
    assert abs(reports["bf16"]["auroc"] - reports["fp32"]["auroc"]) <= 0.01
    assert reports["fp32"]["n"] == reports["bf16"]["n"] > 50


# ---------------------------------------------------------------------- guidance and JoJoGAN
def _callback(encoder, **kw):
    from styleid_guidance.integrations import IdentityGuidanceCallback
    from styleid_guidance.tiny.sd import tiny_taesd

    loss = StyleIDLoss(encoder, reference=torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)),
                       crop="center", precision=kw.pop("loss_precision", None))
    return IdentityGuidanceCallback(loss, guidance_decoder=tiny_taesd().eval(), **kw)


def test_guidance_precision_defaults_to_auto_and_follows_the_loss(encoder):
    assert _callback(encoder).precision == "auto"
    assert _callback(encoder, loss_precision="bf16").precision == "bf16"
    assert _callback(encoder, loss_precision="bf16", precision="fp32").precision == "fp32"
    assert _callback(encoder, autocast=False).precision == "fp32"
    with pytest.raises(StyleIDError):
        _callback(encoder, precision="bf17")


def test_guidance_step_in_bf16_matches_fp32(encoder):
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    out = {}
    for precision in ("fp32", "bf16"):
        cb = _callback(encoder, precision=precision)
        z = x0.clone().requires_grad_(True)
        loss = cb._loss(types.SimpleNamespace(), z, 0, 0)
        assert loss.dtype == torch.float32 and cb.identity_loss.precision is None  # the loss's own setting is restored
        out[precision] = (loss.detach(), cb._descent(loss, z, 0))
    (l32, d32), (l16, d16) = out["fp32"], out["bf16"]
    assert torch.allclose(l16, l32, atol=5e-3)
    assert _cos(d16.flatten(1), d32.flatten(1)).min() >= 0.99  # the guidance direction


def test_jojogan_identity_term_in_bf16_matches_fp32(encoder):
    import copy

    from styleid_guidance.jojogan.align import ffhq_face_region
    from styleid_guidance.jojogan.api import JoJoGAN
    from styleid_guidance.jojogan.finetune import jojogan_losses, sample_noise

    jj = JoJoGAN.tiny(size=64)
    student = copy.deepcopy(jj.generator)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(5)))
    rng = torch.Generator().manual_seed(6)
    latents = jj.generator.get_latent(torch.randn(2, jj.generator.style_dim, generator=rng))[:, None].repeat(1, jj.generator.n_latent, 1)
    noise = sample_noise(jj.generator, 2, rng)
    feats = jj.discriminator.features(torch.rand(2, 3, 64, 64) * 2 - 1)
    loss = build_identity_loss("styleid", model=encoder, device="cpu", crop="face", face_region=ffhq_face_region())
    values = {p: jojogan_losses(student, jj.generator, jj.discriminator, feats, latents, noise, loss, 1.0, precision=p)
              for p in ("fp32", "bf16")}
    assert values["fp32"]["identity"] > 0
    assert abs(float(values["bf16"]["identity"]) - float(values["fp32"]["identity"])) <= 2e-3
    assert torch.equal(values["bf16"]["style"], values["fp32"]["style"])  # the generators stay fp32


# ---------------------------------------------------------------------- command lines
def test_precision_flag_on_the_inference_commands():
    from styleid_guidance.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["verify", "a.png", "b.png"]).precision == "auto"
    assert parser.parse_args(["embed", "dir", "-o", "e.npy", "--precision", "fp32"]).precision == "fp32"
    assert parser.parse_args(["jojogan", "train", "s.png", "-o", "s.pt"]).precision == "auto"
    assert parser.parse_args(["demo", "--precision", "bf16"]).precision == "bf16"
    with pytest.raises(SystemExit):
        parser.parse_args(["verify", "a.png", "b.png", "--precision", "int8"])


def test_verify_bf16_prints_the_fp32_scores(astronaut, camera, tmp_path, capsys):
    from styleid_guidance.cli import run

    files = [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    astronaut.save(files[0])
    camera.save(files[1])
    scores = {}
    for precision in ("fp32", "bf16"):
        assert run(["verify", *files, "--model", "test-tiny", "--crop", "center", "--precision", precision]) == 0
        scores[precision] = float(capsys.readouterr().out.split(":")[1].split()[0])
    assert abs(scores["bf16"] - scores["fp32"]) <= 2e-3
