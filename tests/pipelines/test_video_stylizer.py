"""The Wan 2.x image-to-video stylizer (`pipelines.wan_video`, registered as "wan_video", output "video") on its tiny
random pipeline, and `examples/video_guided.py`. The registry's shared checks (tests/pipelines/test_stylizer_registry.py) run
on it too; here: what is particular to a video stylizer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from styleid_guidance.errors import NoFaceError, StyleIDError, run_cli
from styleid_guidance.pipelines import STYLIZERS, stylizer_names
from styleid_guidance.pipelines.presets import STRENGTH_LEVELS, STYLE_PROMPTS, VIDEO_CHANGE, video_prompt
from styleid_guidance.pipelines.wan_video import WanVideoStylizer, check_wan_i2v_pipeline, flow_matching_scheduler

from video_support import decode_all

STEPS = 2
PIXAR = STYLE_PROMPTS["pixar"]


@pytest.fixture(scope="module")
def stylizer() -> WanVideoStylizer:
    return WanVideoStylizer.tiny()


@pytest.fixture(scope="module")
def face(astronaut) -> Image.Image:
    return astronaut.resize((200, 160))  # 5:4, so the output's aspect shows it follows the photo


def arrays(frames) -> list[np.ndarray]:
    return [np.asarray(f) for f in frames]


def test_registered_as_a_video_stylizer():
    entry = STYLIZERS["wan_video"]
    assert entry.output == "video" and entry.load() is WanVideoStylizer and not entry.paper
    assert "wan_video" in stylizer_names("video") and "wan_video" not in stylizer_names("image")
    assert dict(entry.models) == {"base_model": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"}


def test_a_clip_has_the_frames_and_size_it_is_asked_for(stylizer, face):
    frames = stylizer(face, PIXAR, 4, seed=0, num_inference_steps=STEPS)
    # 5 frames (1 + 4: two latent frames of the causal VAE), the photo's 5:4 at about 64² px, sides multiples of 16
    assert len(frames) == 5 and all(f.size == (64, 48) and f.mode == "RGB" for f in frames)
    assert stylizer.call_settings(4, face)["height"] == 48
    longer = stylizer(face, PIXAR, 4, seed=0, num_inference_steps=STEPS, num_frames=9, width=32, height=32)
    assert len(longer) == 9 and {f.size for f in longer} == {(32, 32)}
    moving = arrays(longer)
    assert not all(np.array_equal(moving[0], m) for m in moving[1:])  # a clip, not one image repeated


def test_the_same_seed_gives_the_same_clip(stylizer, face):
    first = arrays(stylizer(face, PIXAR, 3, seed=5, num_inference_steps=STEPS))
    again = arrays(stylizer(face, PIXAR, 3, seed=5, num_inference_steps=STEPS))
    other = arrays(stylizer(face, PIXAR, 3, seed=6, num_inference_steps=STEPS))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other))


def test_the_level_moves_the_prompt_and_the_cfg(stylizer, face):
    kwargs = {level: stylizer.call_kwargs(face, PIXAR, level) for level in STRENGTH_LEVELS}
    assert [kwargs[level]["guidance_scale"] for level in STRENGTH_LEVELS] == [3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5]
    assert all(kwargs[level]["prompt"] == f"{PIXAR}. {VIDEO_CHANGE[level]}." for level in STRENGTH_LEVELS)
    assert {kwargs[level]["num_inference_steps"] for level in STRENGTH_LEVELS} == {40}  # the tiny's STEPS come per call
    # the level's sentence reaches the transformer (a live tokenizer and text encoder): CFG held equal, clips differ
    low = arrays(stylizer(face, PIXAR, 2, seed=0, num_inference_steps=STEPS, guidance_scale=5.0))
    high = arrays(stylizer(face, PIXAR, 6, seed=0, num_inference_steps=STEPS, guidance_scale=5.0))
    assert not any(np.array_equal(a, b) for a, b in zip(low, high))


def test_presets_cover_the_ten_styles_and_seven_levels():
    entry = STYLIZERS["wan_video"]
    assert set(entry.prompts) == set(STYLE_PROMPTS) and len(STYLE_PROMPTS) == 10
    prompts = set()
    for style, text in STYLE_PROMPTS.items():
        for level in STRENGTH_LEVELS:
            preset = entry.presets(style, level)
            assert preset["prompt"] == text and preset["negative_prompt"].strip()
            prompts.add(video_prompt(preset["prompt"], level))
    assert len(prompts) == 70  # every style × level is its own prompt
    # any other text is a style prompt too; a level outside 1..7 or an empty prompt is refused
    assert video_prompt("a bronze statue.", 7).startswith("a bronze statue. The person")
    for bad in (0, 8, 2.5, True):
        with pytest.raises(StyleIDError, match="strength_level"):
            video_prompt(PIXAR, bad)
    with pytest.raises(StyleIDError, match="empty"):
        video_prompt("  ", 3)


def spy_on_decode(cb, decoded: list) -> None:
    """Record the latent frames each guided step of `cb` decodes."""
    real_decode = cb.decode

    def decode(pipe, x0, frames=None):
        assert x0.ndim == 5  # video latents [B, C, F, h, w]
        decoded.append(frames)
        return real_decode(pipe, x0, frames)

    cb.decode = decode


def test_identity_guidance_runs_on_the_clip_and_raises_its_similarity(stylizer, astronaut):
    from styleid_guidance import StyleIDEncoder, StyleIDLoss
    from styleid_guidance.integrations import DEFAULT_SCALES, IdentityGuidanceCallback

    loss = StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), reference=astronaut, crop="center")

    def similarity(frames) -> float:
        with torch.no_grad():
            return float(loss.similarity(torch.stack([to_tensor(f) for f in frames])).mean())

    steps = 4
    for seed in range(3):
        plain = stylizer(astronaut, PIXAR, 4, seed=seed, num_inference_steps=steps)
        cb = IdentityGuidanceCallback(loss, end=1.0, frames_per_step=1)  # the Wan family's default scale
        assert cb.scale_for(stylizer.pipe) == DEFAULT_SCALES["wan"]
        decoded, user_steps = [], []
        spy_on_decode(cb, decoded)
        guided = stylizer(astronaut, PIXAR, 4, identity_guidance=cb, seed=seed, num_inference_steps=steps,
                          callback_on_step_end=lambda pipe, step, t, kwargs, seen=user_steps: seen.append(step) or kwargs)
        assert len(cb.last_losses) == steps and user_steps == list(range(steps))  # both callbacks, every step
        assert sorted(f for frames in decoded for f in frames) == [0, 0, 1, 1]  # one latent frame a step, rotating
        assert similarity(guided) > similarity(plain), seed
    zero = stylizer(astronaut, PIXAR, 4, identity_guidance=IdentityGuidanceCallback(loss, scale=0.0), seed=2,
                    num_inference_steps=steps)
    assert all(np.array_equal(a, b) for a, b in zip(arrays(zero), arrays(plain)))


def test_bad_input_is_one_line(stylizer, face, tmp_path):
    with pytest.raises(StyleIDError, match=r"num_frames=6: the clip length must be 4k \+ 1"):
        stylizer(face, PIXAR, 4, num_frames=6, num_inference_steps=STEPS)
    with pytest.raises(StyleIDError, match="multiples of 16"):
        stylizer(face, PIXAR, 4, width=72, num_inference_steps=STEPS)
    with pytest.raises(NoFaceError):
        stylizer(Image.new("RGB", (96, 96), (128, 128, 128)), PIXAR, 4, num_inference_steps=STEPS)
    from styleid_guidance.tiny.video import tiny_wan

    with pytest.raises(StyleIDError, match="needs a diffusers WanImageToVideoPipeline .* got WanPipeline"):
        check_wan_i2v_pipeline(tiny_wan())
    # a text-to-video Wan folder is refused from its model_index.json, before anything loads
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline", "_diffusers_version": "0.35.0"}))
    with pytest.raises(StyleIDError, match="holds a WanPipeline .* not an image-to-video Wan model"):
        WanVideoStylizer.from_pretrained(str(tmp_path), device="cpu")
    with pytest.raises(StyleIDError, match="could not be loaded .* check base_model"):
        WanVideoStylizer.from_pretrained(str(tmp_path / "missing"), device="cpu")


def test_wans_own_scheduler_becomes_flow_matching_euler_at_its_shift():
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    euler = flow_matching_scheduler(unipc)
    assert isinstance(euler, FlowMatchEulerDiscreteScheduler) and euler.config.shift == 5.0
    assert flow_matching_scheduler(euler) is euler
    assert flow_matching_scheduler(UniPCMultistepScheduler()).config.shift == 3.0  # none named: Wan 2.1's 480p


def test_example_writes_a_decodable_mp4_and_its_similarity_plot(tmp_path, stylizer):
    from examples.common import DEFAULT_FACE
    from examples.video_guided import main, write_mp4

    out = tmp_path / "clips" / "portrait.mp4"
    assert main(["--tiny", "--compare", "--inference-steps", "2", "--augment-views", "0", "--output", str(out)]) == 0
    for clip in (out, out.with_name("portrait-unguided.mp4")):
        frames = decode_all(clip)
        assert len(frames) == 5 and frames[0].shape == (64, 64, 3)  # the bundled face is square
        plot = Image.open(clip.with_suffix(".png"))
        assert plot.format == "PNG" and plot.size[0] > 300
    # the mp4 holds the generated frames (near-lossless H.264)
    made = stylizer(Image.open(DEFAULT_FACE), PIXAR, 4, seed=0, num_inference_steps=STEPS)
    again = decode_all(write_mp4(made, tmp_path / "direct.mp4", fps=8))
    error = np.abs(np.stack(again).astype(float) - np.stack(arrays(made)).astype(float)).mean()
    assert len(again) == len(made) and error < 6, error


def test_example_refuses_bad_arguments_before_any_model_loads(tmp_path, capsys):
    from examples.video_guided import main

    for argv, message in [(["--output", str(tmp_path / "clip.gif")], "--output " + str(tmp_path / "clip.gif") + ": the clip is saved as mp4"),
                          (["--frames", "0"], "--frames 0: must be at least 1"),
                          (["--num-frames", "6"], "--num-frames 6: the clip length must be 4k + 1")]:
        assert run_cli(main, ["--tiny", "--output", str(tmp_path / "clip.mp4"), *argv], prog="video_guided") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("video_guided: error: " + message), err
    with pytest.raises(SystemExit) as exit_:  # argparse's own: usage, then one error line
        main(["--tiny", "--levels", "9", "--output", str(tmp_path / "clip.mp4")])
    assert exit_.value.code == 2 and "levels must be integers from 1 to 7" in capsys.readouterr().err.splitlines()[-1]
    assert not any(tmp_path.iterdir())  # nothing written
