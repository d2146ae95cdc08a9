"""InfiniteYou pipeline: InfuseNet inputs, presets, StyleID guidance, official weight layout, errors (tiny, offline)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import FluxControlNetPipeline, FluxPipeline
from PIL import Image

from styleid_guidance.pipelines.infiniteyou import InfiniteYouPipeline, InfiniteYouStylizer, InfuseNet
from styleid_guidance.tiny.controlnet import tiny_flux_controlnet_components, tiny_infiniteyou_state_dict
from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.identity_losses import StyleIDLoss
from support import (assert_example_saves_a_grid, assert_guidance_helps_and_scale_zero_is_exact,
                     assert_tiny_leaves_the_global_rng_alone)

SIZE = 32


@pytest.fixture(scope="module")
def pipe():
    pipe = InfiniteYouPipeline(**tiny_flux_controlnet_components())
    pipe.load_image_proj(tiny_infiniteyou_state_dict())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def face(astronaut):
    return InfiniteYouStylizer.tiny().face_embedder(astronaut)


def _run(pipe, embedding, steps=4, seed=0, **kw):
    kw.setdefault("strength_level", 4)
    out = pipe("portrait of a Pixar character", id_embeds=embedding, num_inference_steps=steps, height=SIZE, width=SIZE,
               max_sequence_length=16, generator=torch.Generator().manual_seed(seed), output_type="np", **kw)
    return torch.from_numpy(out.images).permute(0, 3, 1, 2)


def test_infusenet_sees_identity_tokens_zero_ids_and_its_own_guidance(pipe, face):
    seen = {}

    def grab(name):
        def hook(module, args, kwargs):
            seen.setdefault(name, (args, kwargs))
        return hook

    hooks = [pipe.transformer.register_forward_pre_hook(grab("transformer"), with_kwargs=True),
             pipe.controlnet.context_embedder.register_forward_pre_hook(grab("infusenet_text"), with_kwargs=True),
             pipe.controlnet.time_text_embed.register_forward_pre_hook(grab("infusenet_cond"), with_kwargs=True),
             pipe.controlnet.pos_embed.register_forward_pre_hook(grab("infusenet_ids"), with_kwargs=True)]
    try:
        _run(pipe, face.embedding, steps=1, guidance_scale=3.5, infusenet_guidance_scale=1.0)
    finally:
        for h in hooks:
            h.remove()
    tokens = pipe.encode_identity(face.embedding)
    assert tokens.shape == (1, 8, pipe.controlnet.config.joint_attention_dim)
    # InfuseNet's text stream is the identity tokens, the transformer's is the prompt (16 T5 tokens here)
    torch.testing.assert_close(seen["infusenet_text"][0][0], tokens)
    assert seen["transformer"][1]["encoder_hidden_states"].shape[1] == 16
    # distilled guidance: 3.5 for the transformer, infusenet_guidance_scale (1.0) for InfuseNet
    assert float(seen["transformer"][1]["guidance"][0]) == pytest.approx(3.5)
    assert float(seen["infusenet_cond"][0][1][0]) == pytest.approx(1.0 * 1000)  # diffusers scales guidance by 1000
    ids = seen["infusenet_ids"][0][0]
    assert not ids[: -SIZE * SIZE // 4].any() and ids.shape[0] == 8 + SIZE * SIZE // 4  # 8 zero text ids, then image ids
    assert pipe.controlnet._id_tokens is None  # cleared after the call
    with pytest.raises(StyleIDError, match="without identity tokens"):
        pipe.controlnet(hidden_states=torch.zeros(1, 4, 4), controlnet_cond=torch.zeros(1, 4, 4))


def test_embedding_changes_the_image_only_through_infusenet(pipe, face):
    a, b = _run(pipe, face.embedding, steps=2), _run(pipe, -face.embedding, steps=2)
    # small in the tiny model (8 identity tokens next to 256 image tokens in one joint block), but far above
    # float noise: with InfuseNet off the two runs are bit-identical
    assert (a - b).abs().max() > 1e-5
    off = dict(infusenet_conditioning_scale=0.0)
    torch.testing.assert_close(_run(pipe, face.embedding, steps=2, **off), _run(pipe, -face.embedding, steps=2, **off), atol=0, rtol=0)
    # InfuseNet's guidance input is its own (1.0 upstream), not the transformer's guidance
    assert (_run(pipe, face.embedding, steps=2, infusenet_guidance_scale=5.0) - a).abs().max() > 0


@pytest.mark.parametrize("level", [1, 4, 7])
def test_strength_levels_set_the_papers_scales(pipe, face, monkeypatch, level):
    captured = {}
    monkeypatch.setattr(FluxControlNetPipeline, "__call__", lambda self, **kw: captured.update(kw))
    pipe("p", id_embeds=face.embedding, strength_level=level)
    assert captured["controlnet_conditioning_scale"] == pytest.approx(1.1 - 0.15 * level)
    assert captured["guidance_scale"] == pytest.approx(level + 0.2)
    assert (captured["num_inference_steps"], captured["height"], captured["width"]) == (20, 512, 512)
    assert captured["control_image"].size == (512, 512) and not np.asarray(captured["control_image"]).any()  # black
    pipe("p", id_embeds=face.embedding, strength_level=level, infusenet_conditioning_scale=0.5, height=256)
    assert captured["controlnet_conditioning_scale"] == 0.5 and captured["height"] == 256
    pipe("p", id_embeds=face.embedding)  # no level: upstream defaults
    assert (captured["controlnet_conditioning_scale"], captured["guidance_scale"], captured["num_inference_steps"]) == (1.0, 3.5, 30)


@pytest.mark.parametrize("mode", ["x0", "xt"])
def test_guidance_raises_styleid_similarity_and_scale_zero_is_exact(pipe, face, tiny_encoder, astronaut, mode):
    loss = StyleIDLoss(tiny_encoder, reference=astronaut, crop="center")
    assert_guidance_helps_and_scale_zero_is_exact(lambda **kw: _run(pipe, face.embedding, **kw), loss, mode)


def _save_official(tmp_path, components) -> None:
    folder = tmp_path / "infu_flux_v1.0" / "aes_stage2"
    components["controlnet"].save_pretrained(folder / "InfuseNetModel")
    config = json.loads((folder / "InfuseNetModel" / "config.json").read_text())
    config["_class_name"] = "FluxControlNetModel"  # as in the official folder
    (folder / "InfuseNetModel" / "config.json").write_text(json.dumps(config))
    state = tiny_infiniteyou_state_dict(components["controlnet"].config.joint_attention_dim)
    assert {"latents", "proj_in.weight", "layers.0.0.to_kv.weight", "layers.1.1.1.weight", "norm_out.weight"} <= set(state["image_proj"])
    torch.save(state, folder / "image_proj_model.bin")
    FluxPipeline(**{k: v for k, v in components.items() if k != "controlnet"}).save_pretrained(tmp_path / "flux")


def test_stylizer_loads_the_official_layout(tmp_path, monkeypatch, face):
    from styleid_guidance.pipelines import face_embeddings
    from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder

    components = tiny_flux_controlnet_components()
    _save_official(tmp_path, components)
    # the facexlib ArcFace weights are the core's business (styleid_guidance.baselines.arcface); a tiny one stands in
    asked = []
    monkeypatch.setattr(face_embeddings.ArcFaceEmbedder, "from_pretrained",
                        classmethod(lambda cls, *a, **k: asked.append(k) or TinyFaceEmbedder()))
    (tmp_path / "supports" / "insightface" / "models" / "antelopev2").mkdir(parents=True)  # upstream's detector location
    stylizer = InfiniteYouStylizer.from_pretrained(base_model=str(tmp_path / "flux"), infiniteyou=str(tmp_path), device="cpu",
                                                   torch_dtype=torch.float32)
    assert isinstance(stylizer.pipe.controlnet, InfuseNet)
    # faces found as upstream: antelopev2 from the repo's supports/insightface, no other detector named
    assert asked[0]["detector"] is None and asked[0]["insightface_root"] == str(tmp_path / "supports" / "insightface")
    stylizer.pipe.set_progress_bar_config(disable=True)
    reference = InfiniteYouPipeline(**components)
    reference.load_image_proj(tiny_infiniteyou_state_dict(components["controlnet"].config.joint_attention_dim))
    reference.set_progress_bar_config(disable=True)
    torch.testing.assert_close(_run(stylizer.pipe, face.embedding, steps=2), _run(reference, face.embedding, steps=2))
    # a folder that directly holds InfuseNetModel/ + image_proj_model.bin works too
    direct = InfiniteYouStylizer.from_pretrained(base_model=str(tmp_path / "flux"), infiniteyou=str(tmp_path / "infu_flux_v1.0" / "aes_stage2"),
                                                 device="cpu", torch_dtype=torch.float32)
    assert direct.pipe.image_proj_model is not None


def test_missing_or_wrong_weights_are_clear_errors(tmp_path, pipe, monkeypatch):
    with pytest.raises(StyleIDError, match="no such folder"):
        InfiniteYouStylizer.from_pretrained(infiniteyou=str(tmp_path / "nope"))
    with pytest.raises(StyleIDError, match="expected InfuseNetModel/ and image_proj_model.bin"):
        InfiniteYouStylizer.from_pretrained(infiniteyou=str(tmp_path))
    with pytest.raises(StyleIDError, match="image_proj_model.bin not found"):
        pipe.load_image_proj(tmp_path / "image_proj_model.bin")
    with pytest.raises(StyleIDError, match="expected the key 'image_proj'"):
        pipe.load_image_proj({"latents": torch.zeros(1)})
    wide = tiny_infiniteyou_state_dict(joint_attention_dim=48)
    with pytest.raises(StyleIDError, match="makes 48-d tokens but InfuseNet expects 32-d"):
        pipe.load_image_proj(wide)
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name.startswith("optimum") else real_import(name, *a, **k))
    from styleid_guidance.pipelines.quantize import quantize_flux_8bit

    with pytest.raises(StyleIDError, match="pip install optimum-quanto"):
        quantize_flux_8bit(pipe)


def test_quantize_8bit_keeps_the_tiny_pipeline_close(face):
    pytest.importorskip("optimum.quanto")
    from styleid_guidance.pipelines.quantize import quantize_flux_8bit

    pipe = InfiniteYouPipeline(**tiny_flux_controlnet_components())
    pipe.load_image_proj(tiny_infiniteyou_state_dict())
    pipe.set_progress_bar_config(disable=True)
    before = _run(pipe, face.embedding, steps=2)
    quantize_flux_8bit(pipe)
    assert "QLinear" in type(pipe.transformer.transformer_blocks[0].attn.to_q).__name__
    after = _run(pipe, face.embedding, steps=2)
    assert 0 < (after - before).abs().max() < 0.1


def test_stylizer_tiny_end_to_end_pose_and_no_face(astronaut):
    stylizer = InfiniteYouStylizer.tiny()
    out = stylizer(astronaut, "Portrait of green Orc", strength_level=4, seed=0, num_inference_steps=2)
    assert isinstance(out, Image.Image) and out.size == (SIZE, SIZE)
    # upstream detects the pose on the photo framed at the output size: at 32 px only a close-up has a findable face
    pose = astronaut.crop((140, 40, 320, 240))
    posed = stylizer(astronaut, "Portrait of green Orc", strength_level=4, seed=0, num_inference_steps=2, pose_image=pose)
    assert np.abs(np.asarray(out, np.float32) - np.asarray(posed, np.float32)).max() > 0  # keypoints reach InfuseNet
    with pytest.raises(NoFaceError, match="face image: no face found"):
        stylizer(Image.new("RGB", (128, 128), "white"), "Caricature")


def _reference_frame(photo, width, height):
    """InfiniteYou's resize_and_pad_image, from its rule: fit the target's width (portrait or square target) or
    height (landscape), LANCZOS, paste centred on white (an overflowing photo is cut evenly)."""
    w, h = photo.size
    if width <= height:
        new = (width, int(width * h / w))
    else:
        new = (int(height * w / h), height)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(photo.resize(new, Image.LANCZOS), ((width - new[0]) // 2, (height - new[1]) // 2))
    return canvas


def _reference_kps_drawing(size, kps):
    """InstantID / InfiniteYou draw_kps, from its rule: on a black float canvas, eyes and mouth corners joined to
    the nose by filled ellipses (half axes: half the distance, 4 px; integer centre and angle) in the outer
    point's colour; the canvas × 0.6 to uint8; then filled discs of radius 10 in each point's colour."""
    import cv2

    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]
    canvas = np.zeros((size[1], size[0], 3))
    for a in (0, 1, 3, 4):
        (xa, ya), (xn, yn) = kps[a], kps[2]
        half = int(((xa - xn) ** 2 + (ya - yn) ** 2) ** 0.5 / 2)
        angle = int(np.degrees(np.arctan2(ya - yn, xa - xn)))
        poly = cv2.ellipse2Poly((int((xa + xn) / 2), int((ya + yn) / 2)), (half, 4), angle, 0, 360, 1)
        canvas = cv2.fillConvexPoly(canvas.copy(), poly, colours[a])
    canvas = (canvas * 0.6).astype(np.uint8)
    for (x, y), colour in zip(kps, colours):
        canvas = cv2.circle(canvas.copy(), (int(x), int(y)), 10, colour, -1)
    return canvas


@pytest.mark.parametrize("photo_size,out_size", [((640, 480), (864, 1152)), ((300, 900), (864, 1152)),
                                                 ((500, 500), (1152, 864)), ((400, 1000), (1152, 864))])
def test_pose_control_image_is_pixel_identical_to_upstream(astronaut, photo_size, out_size):
    from styleid_guidance.pipelines.face_embeddings import FaceInfo

    seen = {}
    width, height = out_size
    kps = np.array([[0.40, 0.38], [0.61, 0.37], [0.52, 0.50], [0.43, 0.63], [0.60, 0.62]]) * [width, height] + 0.37

    class Embedder:
        def __call__(self, image, name="face image"):
            return FaceInfo(torch.ones(512), kps, np.array([0.0, 0, 10, 10]))

        def detect(self, image, name="face image"):
            seen["framed"] = image
            return kps, np.array([0.0, 0, 10, 10])

    class Pipe:
        def __call__(self, prompt, **kwargs):
            seen.update(kwargs)
            return type("Out", (), {"images": [Image.new("RGB", (width, height))]})()

    pose = astronaut.resize(photo_size)
    InfiniteYouStylizer(Pipe(), Embedder())(astronaut, "Caricature", width=width, height=height, pose_image=pose)
    assert np.array_equal(np.asarray(seen["framed"]), np.asarray(_reference_frame(pose, width, height)))
    control = np.asarray(seen["control_image"])
    want = _reference_kps_drawing((width, height), kps)
    assert control.shape == want.shape == (height, width, 3)
    assert np.array_equal(control, want)  # fixed 4/10-px strokes at any size, keypoints in the framed image
    if photo_size == (640, 480):  # white bands above and below a landscape photo in a portrait frame
        framed = np.asarray(seen["framed"])
        assert (framed[:100] == 255).all() and (framed[-100:] == 255).all()


def test_example_tiny_saves_an_annotated_grid(tmp_path, capsys):
    from examples.infiniteyou_guided import main
    from styleid_guidance.errors import run_cli

    assert_example_saves_a_grid(main, tmp_path / "grid.png")
    assert run_cli(main, ["--tiny", "--output", str(tmp_path / "grid.jpg")], prog="infiniteyou_guided") == 2
    assert "saved as PNG" in capsys.readouterr().err


def test_tiny_leaves_the_global_rng_alone():
    assert_tiny_leaves_the_global_rng_alone(lambda: InfiniteYouStylizer.tiny())
