"""`StyleIDScore` (torchmetrics) and `styleid_score`: equal to embed + cosine, DDP (gloo, 2 CPU processes) equal to
one process, the fixed reference kept across reset() only when asked, gradients to the images only."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("torchmetrics")

from styleid_guidance import StyleIDEncoder
from styleid_guidance.metrics import StyleIDScore, styleid_score
from support import free_port

KW = dict(crop="center", precision="fp32")


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 48, 48, generator=g) * 255).to(torch.uint8)


@pytest.fixture(scope="module")
def enc():
    return StyleIDEncoder.from_pretrained("test-tiny").eval()


def _by_hand(enc, preds, target):
    zp = enc.embed(preds.float() / 255, **KW)
    zt = enc.embed(target.float() / 255, **KW)
    return (zp * zt).sum(-1).double()


def test_paired_and_fixed_reference_equal_embed_and_cosine(enc):
    preds, target = _images(6, 1), _images(6, 2)
    m = StyleIDScore(enc, threshold=0.5, keep_samples=True, **KW)
    m.update(preds[:4], target[:4])
    m.update(preds[4:], target[4:])
    out = m.compute()
    want = _by_hand(enc, preds, target)
    assert out["similarity"].item() == pytest.approx(want.mean().item(), abs=1e-5)
    assert out["std"].item() == pytest.approx(want.std().item(), abs=1e-4)
    assert out["verified"].item() == pytest.approx((want >= 0.5).double().mean().item())
    torch.testing.assert_close(out["samples"].double(), want, atol=1e-5, rtol=0)
    # one fixed reference: several photos → their normalised mean embedding
    photos = _images(3, 3)
    fixed = StyleIDScore(enc, reference=photos, **KW)
    fixed.update(preds)
    mean = torch.nn.functional.normalize(enc.embed(photos.float() / 255, **KW).mean(0), dim=-1)
    assert fixed.compute()["similarity"].item() == pytest.approx((enc.embed(preds.float() / 255, **KW) @ mean).mean().item(), abs=1e-5)
    assert styleid_score(preds.float() / 255, target.float() / 255, enc, **KW).item() == pytest.approx(want.mean().item(), abs=1e-5)
    # forward (the per-batch value) keeps the fixed reference
    assert torch.isfinite(fixed(preds[:2])["similarity"])


def test_reset_keeps_the_reference_only_when_asked(enc):
    photos, preds = _images(2, 4), _images(3, 5)
    keep = StyleIDScore(enc, reference=photos, reset_reference=False, **KW)
    drop = StyleIDScore(enc, reference=photos, **KW)
    for m in (keep, drop):
        m.update(preds)
        m.reset()
        assert m.total == 0
    keep.update(preds)  # still has its reference
    with pytest.raises(ValueError, match="no fixed reference"):
        drop.update(preds)


def test_gradients_reach_the_images_not_the_encoder(enc):
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    s = styleid_score(x, torch.rand(1, 3, 48, 48), enc, **KW)
    s.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())
    m = StyleIDScore(enc, **KW).train()
    assert not m.encoder.training and StyleIDScore.higher_is_better and StyleIDScore.is_differentiable


def test_plot(enc):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    m = StyleIDScore(enc, normalize=True, **KW)
    m.update(torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48))
    fig, ax = m.plot()
    assert fig is not None


# (preds, target, items) per kind: images in uneven shards of 4 and 3; clips [B, F, 3, H, W] in shards of 3 and 2
DATA = {"images": (lambda: (_images(7, 1), _images(7, 2)), 7, 1e-5),
        "clips": (lambda: (_clips(5, 3, 21), _images(5, 22)), 5, 1e-6)}


def _worker(rank: int, world: int, port: int, out: str, kind: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        make, n, _ = DATA[kind]
        preds, target = make()
        m = StyleIDScore("test-tiny", keep_samples=True, **KW)
        idx = list(range(rank, n, world))
        m.update(preds[idx], target[idx])
        res = m.compute()
        if rank == 0:
            save_file({k: v.detach().cpu().contiguous() for k, v in res.items()}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("kind", list(DATA))
def test_two_gloo_processes_equal_one(tmp_path, enc, kind):
    import torch.multiprocessing as mp

    out = tmp_path / f"ddp_{kind}.safetensors"
    # fork: the workers inherit the imported torch / torchmetrics / encoder code (spawn re-imports them, ~15 s each here);
    # the parent has no process group and one torch thread, so forking is safe
    mp.start_processes(_worker, args=(2, free_port(), str(out), kind), nprocs=2, join=True, start_method="fork")
    ddp = load_file(out)
    make, n, tol = DATA[kind]
    single = StyleIDScore(enc, keep_samples=True, **KW)
    single.update(*make())
    one = single.compute()
    for key in ("similarity", "std", "verified"):
        assert ddp[key].item() == pytest.approx(one[key].item(), abs=tol), key
    assert sorted(ddp["samples"].tolist()) == pytest.approx(sorted(one["samples"].detach().tolist()), abs=tol)
    assert len(ddp["samples"]) == n


def _clips(n: int, frames: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, frames, 3, 48, 48, generator=g) * 255).to(torch.uint8)


def test_class_equals_functional_on_images_and_clips(enc):
    """torchmetrics' MetricTester rule: accumulated class result == functional on all the data, batch by batch too."""
    for preds, target in ((_images(6, 11), _images(6, 12)), (_clips(5, 4, 13), _images(5, 14))):
        m = StyleIDScore(enc, keep_samples=True, **KW)
        batches = [(preds[:2], target[:2]), (preds[2:], target[2:])]
        for p, t in batches:
            step = m(p, t)["similarity"]  # forward: the batch's own value
            want = styleid_score(p.float() / 255, t.float() / 255, enc, **KW)
            assert step.item() == pytest.approx(want.item(), abs=1e-6)
        per_item = styleid_score(preds.float() / 255, target.float() / 255, enc, reduction="none", **KW)
        out = m.compute()
        torch.testing.assert_close(out["samples"].detach().double(), per_item.detach().double(), atol=1e-6, rtol=0)
        assert out["similarity"].item() == pytest.approx(per_item.mean().item(), abs=1e-6)
    # a clip's value is the mean of its frames, each frame scored as an image
    clips, refs = _clips(2, 3, 15), _images(2, 16)
    frames = styleid_score(clips.float() / 255, refs.float() / 255, enc, reduction="frames", **KW)
    by_image = styleid_score(clips.flatten(0, 1).float() / 255, refs.repeat_interleave(3, 0).float() / 255, enc,
                             reduction="none", **KW)
    torch.testing.assert_close(frames.flatten(), by_image, atol=1e-6, rtol=0)
    fixed = StyleIDScore(enc, reference=refs[:1], **KW)
    fixed.update(clips)
    want = styleid_score(clips.float() / 255, refs[:1].float() / 255, enc, **KW)
    assert fixed.compute()["similarity"].item() == pytest.approx(want.item(), abs=1e-6)
    with pytest.raises(ValueError, match="clip tensor"):
        fixed.update(torch.zeros(2, 3, 4, 48, 48))


def test_gradients_flow_through_forward_and_match_finite_differences(enc):
    # forward's batch value is the differentiable one; torchmetrics accumulates the states across batches under no_grad
    target = torch.rand(1, 3, 48, 48)
    for shape in ((3, 3, 48, 48), (2, 3, 3, 48, 48)):
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(3))
        m = StyleIDScore(enc, normalize=True, **KW)
        xa = x.clone().requires_grad_(True)
        out = m(xa, target)["similarity"]
        assert out.requires_grad == StyleIDScore.is_differentiable  # the flag tells the truth
        (ga,) = torch.autograd.grad(out, xa)
        xb = x.clone().requires_grad_(True)
        (gb,) = torch.autograd.grad(styleid_score(xb, target, enc, **KW), xb)
        torch.testing.assert_close(ga, gb, atol=1e-7, rtol=1e-4)  # class gradient == functional gradient
        # a central finite difference along the gradient agrees with it (float32: loose tolerance)
        direction = gb / gb.norm()
        eps = 1e-2
        f = lambda v: styleid_score(v, target, enc, **KW).item()
        numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
        assert numeric == pytest.approx(float((gb * direction).sum()), rel=0.1, abs=1e-6)
        assert all(p.grad is None for p in enc.parameters())
