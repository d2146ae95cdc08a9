"""IP-Adapter on SD1.5: loading the official layouts (tiny state dicts, real key names), presets, guidance."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

from styleid_guidance.integrations import IdentityGuidanceCallback
from styleid_guidance.pipelines.ip_adapter import (IPAdapterStylizer, face_id_embeds, ip_adapter_variant,
                                                   load_ip_adapter, read_ip_adapter_weights)
from styleid_guidance.pipelines.presets import ip_adapter_preset
from styleid_guidance.tiny.sd import tiny_ip_adapter_state_dict, tiny_sd15_components
from styleid_guidance import StyleIDEncoder, StyleIDLoss, build_identity_loss
from styleid_guidance.errors import StyleIDError
from styleid_guidance.faces.detection import FaceRegion
from support import assert_tiny_leaves_the_global_rng_alone


@pytest.fixture(scope="module")
def stylizer():
    return IPAdapterStylizer.tiny()


@pytest.fixture(scope="module")
def loss(astronaut):
    return StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), reference=astronaut, crop="center")


@pytest.mark.parametrize("variant", ["plain", "faceid", "faceid-plus"])
def test_official_layouts_load_into_the_unet(variant):
    pipe = StableDiffusionPipeline(**tiny_sd15_components())
    state = tiny_ip_adapter_state_dict(pipe.unet, variant)
    assert load_ip_adapter(pipe, state) == variant
    procs = pipe.unet.attn_processors
    ip_procs = [(i, p) for i, (name, p) in enumerate(procs.items()) if isinstance(p, IPAdapterAttnProcessor2_0)]
    assert ip_procs and all(i % 2 == 1 for i, _ in ip_procs)  # upstream numbers cross-attentions 1, 3, 5, …
    for index, proc in ip_procs:  # each upstream "<i>.to_k_ip" landed in processor i
        torch.testing.assert_close(proc.to_k_ip[0].weight, state["ip_adapter"][f"{index}.to_k_ip.weight"])
        torch.testing.assert_close(proc.to_v_ip[0].weight, state["ip_adapter"][f"{index}.to_v_ip.weight"])
    has_lora = "faceid_0" in getattr(pipe.unet, "peft_config", {})
    assert has_lora == (variant != "plain")  # FaceID checkpoints carry a LoRA; diffusers applies it


def test_faceid_plus_resampler_keys_map_onto_diffusers():
    pipe = StableDiffusionPipeline(**tiny_sd15_components())
    state = tiny_ip_adapter_state_dict(pipe.unet, "faceid-plus")
    load_ip_adapter(pipe, state)
    proj = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    src = state["image_proj"]
    torch.testing.assert_close(proj.proj_in.weight, src["perceiver_resampler.proj_in.weight"])
    torch.testing.assert_close(proj.proj.net[0].proj.weight, src["proj.0.weight"])
    k, v = src["perceiver_resampler.layers.3.0.to_kv.weight"].chunk(2)
    torch.testing.assert_close(proj.layers[3].attn.to_k.weight, k)
    torch.testing.assert_close(proj.layers[3].attn.to_v.weight, v)


def test_weight_files_round_trip_and_bad_files(tmp_path):
    pipe = StableDiffusionPipeline(**tiny_sd15_components())
    state = tiny_ip_adapter_state_dict(pipe.unet, "faceid")
    torch.save(state, tmp_path / "ip-adapter-faceid_sd15.bin")
    from safetensors.torch import save_file

    save_file({f"{head}.{k}": v.contiguous() for head, part in state.items() for k, v in part.items()}, tmp_path / "a.safetensors")
    for name in ("ip-adapter-faceid_sd15.bin", "a.safetensors"):
        loaded = read_ip_adapter_weights(tmp_path / name)
        assert ip_adapter_variant(loaded) == "faceid"
        assert set(loaded["ip_adapter"]) == set(state["ip_adapter"])
        torch.testing.assert_close(loaded["image_proj"]["proj.2.weight"], state["image_proj"]["proj.2.weight"])
    # a folder + weight name resolves locally, without the network
    assert load_ip_adapter(StableDiffusionPipeline(**tiny_sd15_components()), tmp_path, "ip-adapter-faceid_sd15.bin") == "faceid"
    (tmp_path / "broken.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(StyleIDError, match="broken.bin"):
        read_ip_adapter_weights(tmp_path / "broken.bin")
    with pytest.raises(StyleIDError, match="not found"):
        read_ip_adapter_weights(tmp_path / "missing.bin")
    with pytest.raises(StyleIDError, match="image_proj"):
        ip_adapter_variant({"unet": {}})
    with pytest.raises(StyleIDError, match="weight_name"):
        load_ip_adapter(pipe, tmp_path)
    with pytest.raises(StyleIDError, match="not available"):  # offline Hub id: a clear message, no traceback
        IPAdapterStylizer.from_pretrained("nobody/no-such-model", vae=None)


def test_face_id_embeds_are_normalised_with_zero_negative():
    e = face_id_embeds(torch.randn(512) * 20, do_cfg=True)
    assert e.shape == (2, 1, 1, 512)
    assert torch.equal(e[0], torch.zeros(1, 1, 512))
    assert e[1].norm().item() == pytest.approx(1.0, abs=1e-5)
    assert face_id_embeds(torch.randn(512), do_cfg=False).shape == (1, 1, 1, 512)


def test_stylizer_presets_seeds_and_levels(stylizer, astronaut):
    a = stylizer(astronaut, "Portrait of a Pixar character", strength_level=4, seed=0)
    assert a.size == (64, 64) and a.mode == "RGB"
    proc = next(p for p in stylizer.pipe.unet.attn_processors.values() if isinstance(p, IPAdapterAttnProcessor2_0))
    assert proc.scale == [pytest.approx(ip_adapter_preset(4)["ip_adapter_scale"])]
    assert stylizer.pipe.unet.encoder_hid_proj.image_projection_layers[0].clip_embeds.shape[0] == 2  # CFG pair
    again = stylizer(astronaut, "Portrait of a Pixar character", strength_level=4, seed=0)
    assert np.array_equal(np.asarray(a), np.asarray(again))
    other_seed = stylizer(astronaut, "Portrait of a Pixar character", strength_level=4, seed=1)
    level_1 = stylizer(astronaut, "Portrait of a Pixar character", strength_level=1, seed=0)  # CFG 1: no negative branch
    assert proc.scale == [pytest.approx(1.28)]
    assert not np.array_equal(np.asarray(a), np.asarray(other_seed))
    assert not np.array_equal(np.asarray(a), np.asarray(level_1))
    with pytest.raises(StyleIDError, match="strength_level"):
        stylizer(astronaut, "x", strength_level=8)


def test_stylizer_guidance_raises_identity_similarity(stylizer, astronaut, loss):
    prompt = "Portrait of a Pixar character"
    plain = stylizer(astronaut, prompt, strength_level=4, seed=0)
    cb = IdentityGuidanceCallback(loss, scale=0.3, end=1.0)
    guided = stylizer(astronaut, prompt, strength_level=4, seed=0, identity_guidance=cb)
    assert loss.similarity(guided).item() > loss.similarity(plain).item() + 0.02
    # scale 0 through the stylizer: bit-identical
    same = stylizer(astronaut, prompt, strength_level=4, seed=0, identity_guidance=IdentityGuidanceCallback(loss, scale=0.0))
    assert np.array_equal(np.asarray(plain), np.asarray(same))


def test_face_region_from_the_reference_photo(stylizer, astronaut, loss):
    # the identity loss owns the face crop: crop="face" keeps the reference photo's landmarks for generated images
    face_loss = build_identity_loss("styleid", reference=astronaut, model=loss.model, device="cpu", crop="face", detector="mtcnn")
    cb = IdentityGuidanceCallback(face_loss, scale=0.3, end=1.0)
    assert isinstance(face_loss.face_region, FaceRegion)
    x, y = face_loss.face_region.landmarks[2]  # the nose lies inside the image, in normalised coordinates
    assert 0.2 < x < 0.8 and 0.05 < y < 0.6
    out = stylizer(astronaut, "Caricature", strength_level=3, seed=0, identity_guidance=cb)
    assert out.size == (64, 64)


def test_plain_ip_adapter_takes_the_photo(astronaut):
    st = IPAdapterStylizer.tiny(variant="plain")
    out = st(astronaut, "Portrait in pop-art style", strength_level=5, seed=0, num_inference_steps=4)
    assert out.size == (64, 64) and st.variant == "plain"


def test_example_writes_an_annotated_grid(tmp_path):
    import PIL.Image

    from examples.ip_adapter_guided import main

    out = tmp_path / "grid.png"
    assert main(["--tiny", "--levels", "3", "--output", str(out), "--id-scale", "0.3", "--augment-views", "0"]) == 0
    grid = PIL.Image.open(out)
    assert grid.size == (3 * 256, 34 + 256 + 34)  # title, then reference | unguided | guided with captions
    with pytest.raises(StyleIDError, match="png"):
        main(["--tiny", "--levels", "3", "--output", str(tmp_path / "grid.jpg")])


def test_sdxl_faceid_with_guidance(astronaut, loss):
    from diffusers import StableDiffusionXLPipeline

    from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder
    from styleid_guidance.tiny.sd import tiny_sdxl_components

    pipe = StableDiffusionXLPipeline(**tiny_sdxl_components())
    assert load_ip_adapter(pipe, tiny_ip_adapter_state_dict(pipe.unet, "faceid")) == "faceid"
    pipe.set_progress_bar_config(disable=True)
    st = IPAdapterStylizer(pipe, "faceid", TinyFaceEmbedder(), call_defaults={"height": 64, "width": 64, "num_inference_steps": 5})
    plain = st(astronaut, "Portrait of 2D Anime character", strength_level=3, seed=0)
    guided = st(astronaut, "Portrait of 2D Anime character", strength_level=3, seed=0,
                identity_guidance=IdentityGuidanceCallback(loss, scale=0.3, end=1.0))
    # the random tiny encoder already scores 0.97 unguided: demand that guidance at least halves the loss
    assert loss(guided).item() < 0.5 * loss(plain).item()
    with pytest.raises(StyleIDError, match="face embedder"):
        IPAdapterStylizer(pipe, "faceid", None)


def test_tiny_leaves_the_global_rng_alone():
    assert_tiny_leaves_the_global_rng_alone(lambda: IPAdapterStylizer.tiny(), lambda: IPAdapterStylizer.tiny(variant="plain"))
