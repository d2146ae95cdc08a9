"""StyleIDEncoder: released-format loading, saving, export, LoRA trainability, preprocessing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

from styleid_guidance import StyleIDEncoder
from styleid_guidance.errors import StyleIDError


def _tiny_clip_config(act: str) -> CLIPConfig:
    return CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, vocab_size=99, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8, hidden_act=act),
        projection_dim=16,
    )


def _reference_features(model, pixels: torch.Tensor) -> torch.Tensor:
    # the authors' definition of the identity embedding
    with torch.no_grad():
        return F.normalize(model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output), dim=-1)


def _perturb_lora(encoder: StyleIDEncoder, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_released_clipmodel_format_gives_identical_embeddings(tmp_path, act):
    torch.manual_seed(0)
    model = CLIPModel(_tiny_clip_config(act)).eval()
    model.save_pretrained(tmp_path)
    enc = StyleIDEncoder.from_pretrained(tmp_path).eval()
    assert enc.embedding_dim == 16 and enc.image_size == 32 and not enc.has_adapter
    pixels = torch.randn(3, 3, 32, 32)
    expected = _reference_features(model, pixels)
    with torch.no_grad():
        got = enc.encode_pixels(pixels)
        features = model.get_image_features(pixel_values=pixels)
    if not isinstance(features, torch.Tensor):  # transformers 5 returns an output whose pooler_output is projected
        features = features.pooler_output
    via_hf_api = F.normalize(features, dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, via_hf_api, atol=1e-5, rtol=1e-5)


def test_vision_only_folder_loads_identically(tmp_path):
    torch.manual_seed(0)
    vcfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8, projection_dim=8)
    model = CLIPVisionModelWithProjection(vcfg).eval()
    model.save_pretrained(tmp_path)
    enc = StyleIDEncoder.from_pretrained(tmp_path)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = F.normalize(model(pixel_values=pixels).image_embeds, dim=-1)
        torch.testing.assert_close(enc.encode_pixels(pixels), expected, atol=1e-5, rtol=1e-5)


def test_export_transformers_round_trip_merges_lora(tmp_path, tiny_encoder):
    _perturb_lora(tiny_encoder)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        adapted = tiny_encoder.encode_pixels(pixels)
        with tiny_encoder.adapter_disabled():
            frozen = tiny_encoder.encode_pixels(pixels)
    assert (adapted - frozen).abs().max() > 1e-3, "LoRA perturbation should change the embedding"
    tiny_encoder.export_transformers(tmp_path)
    hf = CLIPVisionModelWithProjection.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        exported = F.normalize(hf(pixel_values=pixels).image_embeds, dim=-1)
    torch.testing.assert_close(exported, adapted, atol=1e-5, rtol=1e-5)
    # and back again through our loader
    again = StyleIDEncoder.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(again.encode_pixels(pixels), adapted, atol=1e-5, rtol=1e-5)


def test_save_pretrained_round_trip_keeps_adapter(tmp_path, tiny_encoder):
    _perturb_lora(tiny_encoder)
    pixels = torch.randn(2, 3, 64, 64)
    tiny_encoder.save_pretrained(tmp_path)
    loaded = StyleIDEncoder.from_pretrained(tmp_path)
    assert loaded.has_adapter and loaded.config.lora.lora_rank == 8
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_pixels(pixels), tiny_encoder.encode_pixels(pixels), atol=1e-6, rtol=1e-6)
        with loaded.adapter_disabled(), tiny_encoder.adapter_disabled():
            torch.testing.assert_close(loaded.encode_pixels(pixels), tiny_encoder.encode_pixels(pixels), atol=1e-6, rtol=1e-6)


def test_only_lora_trains_and_frozen_branch_stays_put(tiny_encoder):
    params = dict(tiny_encoder.named_parameters())
    trainable = [n for n, p in params.items() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # attention (q/k/v and output projections) and MLP layers of every block are adapted
    for block in range(2):
        for layer in ("attn.in_proj", "attn.out_proj", "mlp.c_fc", "mlp.c_proj"):
            assert any(f"resblocks.{block}.{layer}.lora_A" in n for n in trainable), (block, layer)
    frozen_before = {n: p.detach().clone() for n, p in params.items() if not p.requires_grad}
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad(), tiny_encoder.adapter_disabled():
        z0 = tiny_encoder.embed(x, crop="center")
    opt = torch.optim.Adam(tiny_encoder.trainable_parameters(), lr=0.05)
    target = torch.roll(z0, 1, dims=0)
    for _ in range(5):
        loss = (tiny_encoder.embed(x, crop="center") - target).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in tiny_encoder.named_parameters():
        if n in frozen_before:  # bit-exact: LoRA adds x·A·B beside the frozen weights, never into them
            assert torch.equal(p, frozen_before[n]), n
    with torch.no_grad():
        z = tiny_encoder.embed(x, crop="center")
        with tiny_encoder.adapter_disabled():
            z0_after = tiny_encoder.embed(x, crop="center")
    assert (z - z0).abs().max() > 1e-3
    assert torch.equal(z0_after, z0)


def test_gradient_checkpointing_matches(tiny_encoder):
    _perturb_lora(tiny_encoder)
    x = torch.rand(2, 3, 64, 64)
    tiny_encoder.embed(x, crop="center").sum().backward()
    grads = {n: p.grad.clone() for n, p in tiny_encoder.named_parameters() if p.requires_grad}
    tiny_encoder.zero_grad()
    tiny_encoder.set_grad_checkpointing(True)
    tiny_encoder.train()
    tiny_encoder.embed(x, crop="center").sum().backward()
    for n, p in tiny_encoder.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[n], atol=1e-5, rtol=1e-4)


def test_lora_targets_are_configurable():
    attn_only = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_targets="attn")
    names = [n for n, p in attn_only.named_parameters() if p.requires_grad]
    assert names and not any("mlp" in n for n in names)
    plain = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_rank=0)
    assert plain.trainable_parameters() == [] and not plain.has_adapter
    with pytest.raises(StyleIDError, match="lora_targets"):
        StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_targets="convs")


def test_embed_tensor_is_differentiable_normalised_and_batch_invariant(tiny_encoder):
    x = torch.rand(5, 3, 90, 70, requires_grad=True)
    z = tiny_encoder.embed(x, batch_size=2, crop="center")
    assert z.shape == (5, 32)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(5))
    z[:, 0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(tiny_encoder.embed(x.detach(), batch_size=64, crop="center"), z.detach(), atol=1e-5, rtol=1e-5)


def test_embed_accepts_paths_pil_and_tensors_alike(tmp_path, tiny_encoder, astronaut):
    path = tmp_path / "a.png"
    astronaut.save(path)
    x = torch.from_numpy(np.asarray(astronaut)).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        from_path = tiny_encoder.embed(str(path), crop="center")
        from_pil = tiny_encoder.embed([astronaut], crop="center")
        from_tensor = tiny_encoder.embed(x, crop="center")
    torch.testing.assert_close(from_path, from_pil)
    # files resize with PIL on CPU (as CLIPImageProcessor does), tensors with torch (differentiable)
    assert float((from_path * from_tensor).sum()) > 0.995


def test_preprocessing_matches_clip_image_processor(astronaut):
    from transformers import CLIPImageProcessor

    from styleid_guidance.encoder.preprocess import clip_preprocess

    img = astronaut.resize((300, 260))  # non-square, needs resize + crop
    hf = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    expected = hf(images=img, return_tensors="pt")["pixel_values"]
    x = torch.from_numpy(np.asarray(img)).permute(2, 0, 1).float()[None] / 255
    got = clip_preprocess(x, 224)
    assert got.shape == expected.shape == (1, 3, 224, 224)
    diff = (got - expected).abs()
    # normalised units (1/std ≈ 3.7 per unit of [0,1]); resampling kernels differ slightly at edges
    assert diff.mean() < 0.03, diff.mean()
    assert float(F.cosine_similarity(got.flatten(), expected.flatten(), dim=0)) > 0.999


def test_from_open_clip_rejects_unknown_names():
    with pytest.raises(StyleIDError, match="unknown open_clip model"):
        StyleIDEncoder.from_open_clip("ViT-Z-99", pretrained=None)


def test_clip_normalisation_is_open_clips():
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from styleid_guidance.encoder.config import OPENAI_MEAN, OPENAI_STD

    assert (OPENAI_MEAN, OPENAI_STD) == (tuple(OPENAI_DATASET_MEAN), tuple(OPENAI_DATASET_STD))


def test_lora_settings_have_one_spelling_and_old_folders_still_read():
    from styleid_guidance.encoder.config import LoraSettings, StyleIDConfig

    old = StyleIDConfig.from_dict({"backbone": {"open_clip_model": "test-tiny"}, "image_size": 32, "embedding_dim": 32,
                                   "lora": {"rank": 4, "alpha": 2.0, "dropout": 0.1, "targets": "attn"}})
    assert old.lora == LoraSettings(lora_rank=4, lora_alpha=2.0, lora_dropout=0.1, lora_targets="attn")
    with pytest.raises(StyleIDError, match="lora_rank must be"):
        LoraSettings(lora_rank=-1)
