"""The checks every stylizer in `styleid_guidance.pipelines.STYLIZERS` passes, run over the registry: a stylizer
registered later (by this project or by a package imported before the tests run) gets them without a new test
file. Plus the registry itself: registration rules, lazy import, declared model ids."""
from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.pipelines import STYLIZERS, Stylizer, StylizerEntry, register_stylizer
from styleid_guidance.pipelines.presets import STRENGTH_LEVELS, STYLE_PROMPTS

from support import REPO, subprocess_env

STEPS = 2
NAMES = list(STYLIZERS)  # collected once: every stylizer registered by the time the tests are collected


@pytest.fixture(scope="module")
def face(astronaut) -> Image.Image:
    # not square, so a stylizer whose output follows the photo shows it
    return astronaut.resize((200, 160))


@pytest.fixture(scope="module")
def tiny_stylizers() -> dict[str, Stylizer]:
    return {}


@pytest.fixture
def stylizer(request, tiny_stylizers) -> Stylizer:
    name = request.node.callspec.params["name"]
    if name not in tiny_stylizers:  # built once per module: the tiny FLUX / SDXL models take seconds
        tiny_stylizers[name] = STYLIZERS[name].load().tiny(device="cpu")
    return tiny_stylizers[name]


def frames(output, entry: StylizerEntry) -> list[Image.Image]:
    if entry.output == "video":
        assert isinstance(output, (list, tuple)) and output, type(output)
        return list(output)
    return [output]


def stylize(stylizer, face, name, seed=0, **kw):
    return stylizer(face, STYLIZERS[name].prompts["pixar"], 3, seed=seed, num_inference_steps=STEPS, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_builds_the_registered_class_and_meets_the_protocol(name, stylizer):
    entry = STYLIZERS[name]
    assert type(stylizer) is entry.load() and type(stylizer).__name__ == entry.class_name
    assert isinstance(stylizer, Stylizer)
    assert isinstance(stylizer.call_defaults, dict)
    for method in ("tiny", "from_pretrained"):
        assert inspect.ismethod(getattr(type(stylizer), method)), method  # classmethods


@pytest.mark.parametrize("name", NAMES)
def test_a_call_returns_an_image_of_the_size_its_settings_say(name, stylizer, face):
    settings = stylizer.call_settings(3, face)
    images = frames(stylize(stylizer, face, name), STYLIZERS[name])
    for image in images:
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert image.size == (settings["width"], settings["height"]), (image.size, settings)
    # an explicit size wins over the stylizer's own (+16: a step every pipeline's grid allows, Wan's 8x VAE x 2x patch too)
    width, height = settings["width"] + 16, settings["height"] + 16
    assert frames(stylize(stylizer, face, name, width=width, height=height), STYLIZERS[name])[0].size == (width, height)


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_image_and_another_seed_another(name, stylizer, face):
    entry = STYLIZERS[name]
    first = [np.asarray(f) for f in frames(stylize(stylizer, face, name, seed=7), entry)]
    again = [np.asarray(f) for f in frames(stylize(stylizer, face, name, seed=7), entry)]
    other = [np.asarray(f) for f in frames(stylize(stylizer, face, name, seed=8), entry)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("name", NAMES)
def test_a_step_callback_runs_on_every_step(name, stylizer, face):
    steps = []

    def callback(pipe, step, timestep, kwargs):
        steps.append(int(step))
        return kwargs

    stylize(stylizer, face, name, callback_on_step_end=callback)
    assert steps == list(range(STEPS))


@pytest.mark.parametrize("name", NAMES)
def test_presets_cover_every_style_and_level(name, stylizer):
    entry = STYLIZERS[name]
    assert set(entry.prompts) >= set(STYLE_PROMPTS)  # the paper's ten styles at least
    for style in STYLE_PROMPTS:
        by_level = [entry.presets(style, level) for level in STRENGTH_LEVELS]
        assert len(by_level) == 7 and all(p["prompt"].strip() for p in by_level)
        assert len({repr(sorted(p.items())) for p in by_level}) == 7, f"{name}/{style}: two levels with one preset"
    for bad in (0, 8, 2.5, True):
        with pytest.raises(StyleIDError, match="strength_level"):
            entry.preset(bad)
    with pytest.raises(StyleIDError, match="not one of"):
        entry.presets("vaporwave", 3)
    # a call at a level gets the level's preset, except what the stylizer sets on every call (call_defaults) and
    # the output size, which is the stylizer's own (checked above)
    for level in STRENGTH_LEVELS:
        settings = stylizer.call_settings(level)
        for key, value in entry.preset(level).items():
            if key not in ("height", "width"):
                assert settings[key] == stylizer.call_defaults.get(key, value), (level, key)


@pytest.mark.parametrize("name", NAMES)
def test_model_ids_are_declared_and_are_what_from_pretrained_loads(name):
    from styleid_guidance.perception.generate.models import model_ids

    entry = STYLIZERS[name]
    assert entry.models and all(isinstance(v, str) and v for v in entry.models.values())
    params = inspect.signature(entry.load().from_pretrained).parameters
    for key, value in entry.models.items():
        assert key in params, f"{name}: models[{key!r}] is not a from_pretrained argument"
        assert params[key].default == value, f"{name}: from_pretrained({key}=...) defaults to {params[key].default!r}, the registry says {value!r}"
    for key in ("device", "torch_dtype", "detector"):  # what `generate` and the demo pass
        assert key in params, f"{name}: from_pretrained takes no {key}"
    assert model_ids(name, tiny=False) == {"class": entry.class_name, **entry.models}


def test_the_built_in_four_and_their_order():
    assert NAMES[:4] == ["ip_adapter", "instantid", "infiniteyou", "kontext"]
    assert [n for n in NAMES if STYLIZERS[n].paper] == ["ip_adapter", "instantid", "infiniteyou"]
    assert {STYLIZERS[n].base for n in NAMES[:4]} == {"sd15", "sdxl", "flux"}


def test_importing_the_registry_imports_no_stylizer_or_torch():
    code = ("import sys; from styleid_guidance.pipelines import STYLIZERS; "
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers') "
            "or m.startswith('styleid_guidance.pipelines.') and m != 'styleid_guidance.pipelines.presets']; "
            "print(len(STYLIZERS), sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=REPO, check=True)
    assert out.stdout.split(" ", 1)[1].strip() == "[]", out.stdout


@pytest.fixture
def cleanup():
    before = dict(STYLIZERS)
    yield
    STYLIZERS.clear()
    STYLIZERS.update(before)


def test_registration_rules(cleanup):
    preset = STYLIZERS["ip_adapter"].preset
    ok = dict(label="X", models={"base_model": "me/x"}, preset=preset)
    entry = register_stylizer("x-1", "my_pkg.mod:MyStylizer", **ok)
    assert STYLIZERS["x-1"] is entry and entry.class_name == "MyStylizer" and entry.output == "image" and not entry.paper
    assert dict(entry.prompts) == STYLE_PROMPTS
    with pytest.raises(StyleIDError, match="already registered"):
        register_stylizer("x-1", "my_pkg.mod:MyStylizer", **ok)
    assert register_stylizer("x-1", "my_pkg.mod:Other", replace=True, **ok).class_name == "Other"
    for kwargs, message in [
        (dict(name="../x"), "must be letters"),
        (dict(target="my_pkg.mod.MyStylizer"), "'module:Class'"),
        (dict(output="audio"), "output must be one of image, video"),
        (dict(models={}), "models must map"),
        (dict(models={"base_model": None}), "models must map"),
        (dict(preset="fast"), "preset must be a function"),
    ]:
        args = {"name": "y", "target": "my_pkg.mod:MyStylizer", **ok, **kwargs}
        with pytest.raises(StyleIDError, match=message):
            register_stylizer(args.pop("name"), args.pop("target"), **args)
    assert "y" not in STYLIZERS
    # the class is imported on first use only; a missing module is one line naming it, its cause kept
    with pytest.raises(StyleIDError, match=r"cannot import my_pkg\.mod\.Other \(ModuleNotFoundError: No module named 'my_pkg'\)") as err:
        STYLIZERS["x-1"].load()
    assert isinstance(err.value.__cause__, ImportError)
