"""InstantID pipeline: identity plumbing, presets, StyleID guidance, official weight layout, errors (tiny, offline)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLControlNetPipeline
from PIL import Image

from styleid_guidance.integrations import IdentityGuidanceCallback
from styleid_guidance.pipelines.instantid import (KPS_COLORS, IdentityNet, InstantIDAttnProcessor, InstantIDStylizer,
                                                  StableDiffusionXLInstantIDPipeline, draw_kps, kps_image,
                                                  resize_face_image)
from styleid_guidance.pipelines.presets import instantid_preset
from styleid_guidance.tiny.controlnet import tiny_instantid_state_dict, tiny_sdxl_controlnet_components
from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.identity_losses import StyleIDLoss
from support import (assert_example_saves_a_grid, assert_guidance_helps_and_scale_zero_is_exact,
                     assert_tiny_leaves_the_global_rng_alone)

SIZE = 64
LANDMARKS = np.array([[20.0, 24.0], [44.0, 24.0], [32.0, 36.0], [23.0, 48.0], [41.0, 48.0]])


@pytest.fixture(scope="module")
def pipe():
    pipe = StableDiffusionXLInstantIDPipeline(**tiny_sdxl_controlnet_components())
    pipe.load_ip_adapter_instantid(tiny_instantid_state_dict(pipe.unet))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def face(astronaut):
    return InstantIDStylizer.tiny().face_embedder(astronaut)


def _run(pipe, embedding, steps=4, seed=0, **kw):
    kw.setdefault("strength_level", 4)
    out = pipe("portrait of a Pixar character", image_embeds=embedding, image=draw_kps((SIZE, SIZE), LANDMARKS, 1, 3),
               num_inference_steps=steps, height=SIZE, width=SIZE, generator=torch.Generator().manual_seed(seed),
               output_type="np", **kw)
    return torch.from_numpy(out.images).permute(0, 3, 1, 2)


def test_draw_kps_colours_and_limbs():
    img = np.asarray(draw_kps((SIZE, SIZE), LANDMARKS, stick_width=1, radius=3))
    assert img.shape == (SIZE, SIZE, 3)
    for (x, y), colour in zip(LANDMARKS.astype(int), KPS_COLORS):
        assert tuple(img[y, x]) == colour
    assert tuple(img[0, 0]) == (0, 0, 0)
    # the left-eye → nose limb, halfway, in the left eye's colour at 60 %
    mid = ((LANDMARKS[0] + LANDMARKS[2]) / 2).astype(int)
    assert tuple(img[mid[1], mid[0]]) == (153, 0, 0)


def test_kps_image_maps_landmarks_through_the_centre_crop_with_upstreams_fixed_strokes():
    # a 400x200 photo, output 256x256: the crop keeps x in [100, 300] and scales by 1.28
    pts = np.array([[150.0, 70.0], [250, 70], [200, 110], [160, 170], [240, 170]])
    img = np.asarray(kps_image((400, 200), pts, (256, 256)))
    mapped = (pts - [100, 0]) * 1.28
    for (x, y), colour in zip(mapped, KPS_COLORS):
        assert tuple(img[int(y), int(x)]) == colour
    nose_x, nose_y = int(mapped[2, 0]), int(mapped[2, 1])
    assert tuple(img[nose_y + 9, nose_x]) == KPS_COLORS[2]  # radius 10 px at any output size (upstream)
    assert tuple(img[nose_y + 13, nose_x]) == (0, 0, 0)
    # the same size in and out is upstream's picture exactly
    assert np.array_equal(np.asarray(kps_image((256, 256), mapped, (256, 256))), np.asarray(draw_kps((256, 256), mapped)))


def test_a_call_without_ip_adapter_scale_keeps_the_scale_that_was_set(pipe, face):
    def scales():
        return {p.scale for p in pipe.unet.attn_processors.values() if isinstance(p, InstantIDAttnProcessor)}

    try:
        pipe.set_ip_adapter_scale(0.3)
        kept = _run(pipe, face.embedding, steps=1, strength_level=None)
        assert scales() == {0.3}  # upstream: `if ip_adapter_scale is not None: set_ip_adapter_scale(...)`
        explicit = _run(pipe, face.embedding, steps=1, strength_level=None, ip_adapter_scale=0.3)
        torch.testing.assert_close(kept, explicit, atol=0, rtol=0)
        _run(pipe, face.embedding, steps=1, strength_level=None, ip_adapter_scale=0.5)
        assert scales() == {0.5}
        _run(pipe, face.embedding, steps=1, strength_level=2)  # a level is an explicit setting too
        assert scales() == {float(instantid_preset(2)["ip_adapter_scale"])}
    finally:
        pipe.set_ip_adapter_scale(0.8)


def _upstream_resize_img(image, max_side=1280, min_side=1024, base=64):
    """InstantID's resize_img, written from its rule: short side to 1024, long side to 1280, sides floored to 64."""
    w, h = image.size
    ratio = min_side / min(h, w)
    w, h = round(ratio * w), round(ratio * h)
    ratio = max_side / max(h, w)
    image = image.resize([round(ratio * w), round(ratio * h)], Image.BILINEAR)
    return image.resize([(round(ratio * w) // base) * base, (round(ratio * h) // base) * base], Image.BILINEAR)


@pytest.mark.parametrize("size", [(512, 512), (768, 1024), (1000, 700)])
def test_resize_face_image_is_upstreams_resize_img(size, astronaut):
    photo = astronaut.resize(size)
    got, want = resize_face_image(photo), _upstream_resize_img(photo)
    assert got.size == want.size and np.array_equal(np.asarray(got), np.asarray(want))
    assert {(512, 512): (1280, 1280), (768, 1024): (960, 1280)}.get(size, got.size) == got.size


def test_stylizer_front_end_is_upstreams(astronaut):
    """The embedder sees resize_img(photo); with size=None the output and the keypoint picture are that size,
    the picture drawn there exactly as upstream's draw_kps(face_image, face_info['kps'])."""
    from styleid_guidance.pipelines.face_embeddings import FaceInfo

    seen = {}
    landmarks = np.array([[500.0, 520], [780, 520], [640, 700], [530, 860], [750, 860]])

    class Embedder:
        def __call__(self, image, name="face image"):
            seen["face"] = image
            return FaceInfo(torch.ones(512), landmarks, np.array([400.0, 400, 900, 950]))

    class Pipe:
        def __call__(self, prompt, **kwargs):
            seen["call"] = kwargs
            return type("Out", (), {"images": [Image.new("RGB", (kwargs["width"], kwargs["height"]))]})()

    photo = astronaut.resize((768, 1024))
    out = InstantIDStylizer(Pipe(), Embedder(), size=None)(photo, "Caricature")
    assert np.array_equal(np.asarray(seen["face"]), np.asarray(_upstream_resize_img(photo)))
    assert (seen["call"]["width"], seen["call"]["height"]) == (960, 1280) == out.size
    assert np.array_equal(np.asarray(seen["call"]["image"]), np.asarray(draw_kps((960, 1280), landmarks)))
    InstantIDStylizer(Pipe(), Embedder(), size=1024)(photo, "Caricature")  # the default square output
    assert (seen["call"]["width"], seen["call"]["height"]) == (1024, 1024)
    assert np.array_equal(np.asarray(seen["call"]["image"]), np.asarray(kps_image((960, 1280), landmarks, (1024, 1024))))


def test_identity_tokens_reach_unet_and_identitynet(pipe, face):
    seen = {}

    def grab(name):
        def hook(module, args, kwargs):
            seen.setdefault(name, kwargs["encoder_hidden_states"])
        return hook

    cn_attn = pipe.controlnet.down_blocks[1].attentions[0].transformer_blocks[0].attn2
    hooks = [pipe.unet.register_forward_pre_hook(grab("unet"), with_kwargs=True),
             cn_attn.register_forward_pre_hook(grab("identitynet"), with_kwargs=True)]
    try:
        _run(pipe, face.embedding, steps=1)
    finally:
        for h in hooks:
            h.remove()
    tokens, _ = pipe.encode_identity(face.embedding, 1, do_cfg=True)
    unet_states = seen["unet"]
    assert unet_states.shape == (2, 77 + 16, pipe.unet.config.cross_attention_dim)  # CFG: [uncond, cond]
    torch.testing.assert_close(unet_states[1, -16:], tokens[0])
    neg = pipe.image_proj_model(torch.zeros(1, 1, 512))  # unconditional identity = Resampler(0), as upstream
    torch.testing.assert_close(unet_states[0, -16:], neg[0])
    torch.testing.assert_close(seen["identitynet"], unet_states[:, -16:])  # IdentityNet: identity tokens only
    procs = [p for p in pipe.unet.attn_processors.values() if isinstance(p, InstantIDAttnProcessor)]
    assert len(procs) == 4 and all(p.num_tokens == 16 for p in procs)  # every cross-attention (down, up, mid)


def test_embedding_matters_only_through_adapter_and_identitynet(pipe, face):
    other = -face.embedding
    a, b = _run(pipe, face.embedding, steps=2), _run(pipe, other, steps=2)
    assert (a - b).abs().max() > 1e-3
    off = dict(ip_adapter_scale=0.0, controlnet_conditioning_scale=0.0)
    torch.testing.assert_close(_run(pipe, face.embedding, steps=2, **off), _run(pipe, other, steps=2, **off), atol=0, rtol=0)


@pytest.mark.parametrize("level", [1, 4, 7])
def test_strength_levels_set_the_papers_scales(pipe, face, monkeypatch, level):
    captured = {}
    monkeypatch.setattr(StableDiffusionXLControlNetPipeline, "__call__", lambda self, **kw: captured.update(kw))
    pipe("p", image_embeds=face.embedding, image=Image.new("RGB", (SIZE, SIZE)), strength_level=level)
    scales = {p.scale for p in pipe.unet.attn_processors.values() if isinstance(p, InstantIDAttnProcessor)}
    assert len(scales) == 1 and scales.pop() == pytest.approx(0.02 * 1.8 ** (8 - level))
    assert captured["controlnet_conditioning_scale"] == pytest.approx(1 - level / 8)
    assert captured["guidance_scale"] == level and captured["num_inference_steps"] == 25
    assert (captured["negative_prompt_embeds"] is None) == (level == 1)  # CFG 1: no unconditional branch
    # explicit arguments win over the preset
    pipe("p", image_embeds=face.embedding, image=Image.new("RGB", (SIZE, SIZE)), strength_level=level, controlnet_conditioning_scale=0.3)
    assert captured["controlnet_conditioning_scale"] == 0.3
    with pytest.raises(StyleIDError, match="strength_level must be an integer from 1 to 7"):
        pipe("p", image_embeds=face.embedding, image=Image.new("RGB", (SIZE, SIZE)), strength_level=8)


@pytest.mark.parametrize("mode", ["x0", "xt"])
def test_guidance_raises_styleid_similarity_and_scale_zero_is_exact(pipe, face, tiny_encoder, astronaut, mode):
    loss = StyleIDLoss(tiny_encoder, reference=astronaut, crop="center")
    assert_guidance_helps_and_scale_zero_is_exact(lambda **kw: _run(pipe, face.embedding, **kw), loss, mode)


def test_user_callback_composes_with_guidance(pipe, face, tiny_encoder, astronaut):
    steps = []

    def user(p, i, t, kwargs):
        steps.append(kwargs["latents"].shape)
        return {}

    _run(pipe, face.embedding, steps=2, identity_guidance=IdentityGuidanceCallback(StyleIDLoss(tiny_encoder, reference=astronaut, crop="center")),
         callback_on_step_end=user, callback_on_step_end_tensor_inputs=["latents"])
    assert steps == [(1, 4, 32, 32)] * 2


def _as_upstream_class(folder, class_name: str) -> None:
    """The official folders name the plain diffusers class in config.json."""
    import json

    config = json.loads((folder / "config.json").read_text())
    config["_class_name"] = class_name
    (folder / "config.json").write_text(json.dumps(config))


def _save_sdxl_base(components: dict, folder) -> None:
    """An SDXL base-model folder, as on the Hub (no controlnet in it)."""
    from diffusers import StableDiffusionXLPipeline

    StableDiffusionXLPipeline(**{k: v for k, v in components.items() if k != "controlnet"}).save_pretrained(folder)


def test_official_layout_loads_from_files(tmp_path, face):
    components = tiny_sdxl_controlnet_components()
    state = tiny_instantid_state_dict(components["unet"])
    # real key names: upstream's Resampler and "<processor index>.to_k_ip.weight"
    assert {"latents", "proj_in.weight", "layers.0.0.to_kv.weight", "layers.0.1.3.weight", "norm_out.bias"} <= set(state["image_proj"])
    assert set(state["ip_adapter"]) == {f"{i}.to_{kv}_ip.weight" for i in (1, 3, 5, 7) for kv in "kv"}
    torch.save(state, tmp_path / "ip-adapter.bin")
    components["controlnet"].save_pretrained(tmp_path / "ControlNetModel")
    _as_upstream_class(tmp_path / "ControlNetModel", "ControlNetModel")
    _save_sdxl_base(components, tmp_path / "sdxl")

    controlnet = IdentityNet.from_pretrained(tmp_path / "ControlNetModel")
    pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(tmp_path / "sdxl", controlnet=controlnet)
    pipe.load_ip_adapter_instantid(tmp_path / "ip-adapter.bin")
    procs = list(pipe.unet.attn_processors.values())
    torch.testing.assert_close(procs[3].to_v_ip.weight, state["ip_adapter"]["3.to_v_ip.weight"])
    reference = StableDiffusionXLInstantIDPipeline(**components)
    reference.load_ip_adapter_instantid(state)
    for p in (pipe, reference):
        p.set_progress_bar_config(disable=True)
    torch.testing.assert_close(_run(pipe, face.embedding, steps=2), _run(reference, face.embedding, steps=2))
    # the same weights as a flat safetensors file ("image_proj.latents", "ip_adapter.1.to_k_ip.weight", ...)
    from safetensors.torch import save_file

    save_file({f"{top}.{k}": v.contiguous() for top, part in state.items() for k, v in part.items()}, tmp_path / "ip-adapter.safetensors")
    pipe.load_ip_adapter_instantid(tmp_path / "ip-adapter.safetensors")
    torch.testing.assert_close(list(pipe.unet.attn_processors.values())[3].to_v_ip.weight, state["ip_adapter"]["3.to_v_ip.weight"])


def test_stylizer_from_pretrained_local_folders(tmp_path, monkeypatch):
    from styleid_guidance.pipelines import face_embeddings
    from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder

    components = tiny_sdxl_controlnet_components()
    torch.save(tiny_instantid_state_dict(components["unet"]), tmp_path / "ip-adapter.bin")
    components["controlnet"].save_pretrained(tmp_path / "ControlNetModel")
    _save_sdxl_base(components, tmp_path / "sdxl")
    monkeypatch.setattr(face_embeddings, "load_face_embedder", lambda *a, **k: TinyFaceEmbedder())
    stylizer = InstantIDStylizer.from_pretrained(base_model=str(tmp_path / "sdxl"), instantid=str(tmp_path), device="cpu")
    assert isinstance(stylizer.pipe.controlnet, IdentityNet) and stylizer.pipe.image_proj_model is not None


def test_missing_or_wrong_weights_are_clear_errors(tmp_path, pipe):
    with pytest.raises(StyleIDError, match="no such folder"):
        InstantIDStylizer.from_pretrained(instantid=str(tmp_path / "nope"))
    (tmp_path / "ControlNetModel").mkdir()
    with pytest.raises(StyleIDError, match="expected ControlNetModel/ and ip-adapter.bin"):
        InstantIDStylizer.from_pretrained(instantid=str(tmp_path))
    with pytest.raises(StyleIDError, match="ip-adapter.bin not found"):
        pipe.load_ip_adapter_instantid(tmp_path / "ip-adapter.bin")
    (tmp_path / "ip-adapter.bin").write_bytes(b"garbage")
    with pytest.raises(StyleIDError, match="not a loadable InstantID ip-adapter.bin"):
        pipe.load_ip_adapter_instantid(tmp_path / "ip-adapter.bin")
    good = tiny_instantid_state_dict(pipe.unet)
    with pytest.raises(StyleIDError, match="expected keys 'image_proj' and 'ip_adapter'"):
        pipe.load_ip_adapter_instantid({"image_proj": good["image_proj"]})
    with pytest.raises(StyleIDError, match="1.to_k_ip.weight is missing or has the wrong shape"):
        pipe.load_ip_adapter_instantid({**good, "ip_adapter": {k: v[:, :3] for k, v in good["ip_adapter"].items()}})
    pipe.load_ip_adapter_instantid(good)  # the module-scoped pipe stays usable


def test_stylizer_tiny_end_to_end_and_no_face(astronaut):
    stylizer = InstantIDStylizer.tiny()
    out = stylizer(astronaut, "Portrait of a Pixar character", strength_level=4, seed=0, num_inference_steps=2)
    assert isinstance(out, Image.Image) and out.size == (SIZE, SIZE)
    again = stylizer(astronaut, "Portrait of a Pixar character", strength_level=4, seed=1, num_inference_steps=2)
    assert np.abs(np.asarray(out, np.float32) - np.asarray(again, np.float32)).max() > 0
    with pytest.raises(NoFaceError, match="face image: no face found"):
        stylizer(Image.new("RGB", (128, 128), "white"), "Caricature")


def _upstream_resampler(sd: dict, x: torch.Tensor, heads: int) -> torch.Tensor:
    """The upstream Resampler's arithmetic, written out from its state dict (an independent reference)."""
    ln = torch.nn.functional.layer_norm
    latents = sd["latents"].expand(x.shape[0], -1, -1)
    x = x @ sd["proj_in.weight"].T + sd["proj_in.bias"]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("layers."))
    for i in range(depth):
        p = f"layers.{i}."
        xn = ln(x, x.shape[-1:], sd[p + "0.norm1.weight"], sd[p + "0.norm1.bias"])
        ln_lat = ln(latents, latents.shape[-1:], sd[p + "0.norm2.weight"], sd[p + "0.norm2.bias"])
        q = ln_lat @ sd[p + "0.to_q.weight"].T
        k, v = (torch.cat([xn, ln_lat], 1) @ sd[p + "0.to_kv.weight"].T).chunk(2, dim=-1)
        split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
        w = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(q.shape[-1] // heads), dim=-1)
        attn = (w @ split(v)).transpose(1, 2).reshape(q.shape)
        latents = attn @ sd[p + "0.to_out.weight"].T + latents
        h = ln(latents, latents.shape[-1:], sd[p + "1.0.weight"], sd[p + "1.0.bias"]) @ sd[p + "1.1.weight"].T
        latents = torch.nn.functional.gelu(h) @ sd[p + "1.3.weight"].T + latents
    out = latents @ sd["proj_out.weight"].T + sd["proj_out.bias"]
    return ln(out, out.shape[-1:], sd["norm_out.weight"], sd["norm_out.bias"])


@pytest.mark.parametrize("heads,hidden", [(1, 64), (2, 128)])
def test_resampler_loader_reproduces_the_upstream_resampler(heads, hidden):
    from styleid_guidance.pipelines.resampler import (build_resampler, diffusers_to_upstream, resampler_from_upstream,
                                                      upstream_to_diffusers)

    model = build_resampler(embed_dim=512, output_dim=48, num_queries=16, hidden_dim=hidden, depth=2, heads=heads)
    for p in model.parameters():  # non-trivial norms and biases
        p.data.normal_(0, 0.3)
    upstream = diffusers_to_upstream(model.state_dict())
    assert all(v.shape == upstream_to_diffusers(upstream)[k].shape for k, v in model.state_dict().items())
    loaded = resampler_from_upstream(upstream)
    x = torch.randn(3, 1, 512)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), _upstream_resampler(upstream, x, heads), atol=1e-4, rtol=1e-4)
    with pytest.raises(StyleIDError, match="not an InstantID/InfiniteYou Resampler"):
        resampler_from_upstream({"proj.weight": torch.zeros(1)})


def test_example_tiny_saves_an_annotated_grid(tmp_path, capsys):
    from examples.instantid_guided import main

    assert_example_saves_a_grid(main, tmp_path / "grid.png")  # reference, unguided, guided (+ captions)
    with pytest.raises(SystemExit) as done:  # rejected while parsing, before any model loads
        main(["--tiny", "--levels", "9"])
    assert done.value.code == 2 and "--levels: levels must be integers from 1 to 7" in capsys.readouterr().err


def test_tiny_leaves_the_global_rng_alone():
    assert_tiny_leaves_the_global_rng_alone(lambda: InstantIDStylizer.tiny())
