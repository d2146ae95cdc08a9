"""The node pack in the real ComfyUI server: started headless on 127.0.0.1 from a temporary copy with the pack
installed as `styleid comfyui install` does, driven over HTTP (/object_info, /prompt, /history) with API-format
workflows. One server for the whole module (it takes a while to start on 2 cores)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from comfyui_support import REPO, ComfyServer, comfyui_root, comfyui_version, requires_comfyui, need_root
from styleid_guidance.integrations.comfyui import NODE_IDS

ROOT = comfyui_root()
pytestmark = requires_comfyui()
FACES = REPO / "examples" / "faces"
FILES = ["astronaut.jpg", "astronaut_painted.jpg", "astronaut_sketch.jpg"]
CLIP = "portrait_clip.mp4"
GREY_FRAMES = (2, 5)  # frames without a face


def write_clip(path: Path) -> Path:
    """An 8-frame clip of the astronaut photo moving, with two plain grey frames (no face to find)."""
    import numpy as np
    from PIL import Image
    from video_support import moving_frames, write_video

    frames = moving_frames(Image.open(FACES / FILES[0]), 8, size=128)
    for i in GREY_FRAMES:
        frames[i] = np.full_like(frames[i], 128)
    return write_video(path, frames, codec="mpeg4", fps=8)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("comfyui")
    srv = ComfyServer(need_root(), work)
    try:
        for name in FILES:
            shutil.copy(FACES / name, srv.copy / "input" / name)
        write_clip(srv.copy / "input" / CLIP)
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def loader(**kw):
    return {"class_type": "StyleIDLoader", "inputs": {"model": "test-tiny", "device": "cpu", "precision": "fp32", "detector": "mtcnn"} | kw}


def load(name):
    return {"class_type": "LoadImage", "inputs": {"image": name}}


def similarity_graph():
    return {
        "1": load(FILES[0]), "2": load(FILES[1]), "3": load(FILES[2]),
        "4": {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["3", 0]}},
        "5": loader(),
        "6": {"class_type": "StyleIDSimilarity", "inputs": {"styleid_model": ["5", 0], "reference": ["1", 0], "images": ["4", 0], "threshold": 0.4}},
    }


def error_of(result) -> str:
    """The one-sentence message of a rejected prompt (validation) or a failed node (execution)."""
    if "rejected" in result:
        errors = [e for node in result["rejected"]["node_errors"].values() for e in node["errors"]]
        return errors[0]["details"]
    assert result["status"]["status_str"] == "error"
    (msg,) = [m for kind, m in result["status"]["messages"] if kind == "execution_error"]
    return msg["exception_message"].strip()


def test_the_pack_loads_and_lists_every_node(server):
    from styleid_guidance.integrations.comfyui import TESTED_COMFYUI

    # the version under test is one the pack says it was tested on
    assert ".".join(map(str, comfyui_version(server.copy))) in TESTED_COMFYUI
    log = server.log()
    pack = str(server.pack)
    # ComfyUI lists each custom node folder under "Import times", marked "(IMPORT FAILED)" when it did not load
    assert "IMPORT FAILED" not in server.import_line(), log[-3000:]
    assert "Error while calling comfy_entrypoint" not in log and f"Cannot import {pack}" not in log
    info = server.get("/object_info")
    for node in NODE_IDS:
        assert info[node]["category"] == "StyleID", node
    assert info["StyleIDLoader"]["output"] == ["STYLEID_MODEL"]
    assert info["JoJoGANTrain"]["output"] == ["JOJOGAN_MODEL"]
    assert info["StyleIDGuidance"]["input"]["required"]["model"][0] == "MODEL"
    assert info["StyleIDSimilarity"]["output_is_list"][:3] == [True, True, True]


def test_similarity_matches_styleid_verify(server, monkeypatch, capsys):
    # `styleid verify` must see the pixels the node saw: LoadImage decodes JPEGs with PIL on 0.3.64 and with PyAV
    # on newer ComfyUIs (up to 34/255 apart), so the graph saves what LoadImage produced as lossless PNGs
    graph = similarity_graph()
    for i in range(3):
        graph[f"1{i}"] = {"class_type": "StyleIDTestSaveExact", "inputs": {"images": [str(i + 1), 0], "filename_prefix": f"decoded_{i}"}}
    result = server.run(graph)
    assert result["status"]["status_str"] == "success", result["status"]
    ui = result["outputs"]["6"]
    assert ui["face_found"] == [True, True] and ui["reference_face_found"] == [True]
    decoded = []
    for i in range(3):
        (saved,) = result["outputs"][f"1{i}"]["files"]
        decoded.append(server.copy / "output" / saved)
    # the same model, crop, detector and precision; verify's embeddings are read at full precision (it prints
    # 4 decimals), and its printed lines are checked too
    from styleid_guidance import StyleIDEncoder
    from styleid_guidance.cli import run

    seen = []
    real_embed = StyleIDEncoder.embed

    def spy(self, *args, **kwargs):
        z = real_embed(self, *args, **kwargs)
        seen.append(z)
        return z

    monkeypatch.setattr(StyleIDEncoder, "embed", spy)
    paths = [str(p) for p in decoded]
    assert run(["verify", "--model", "test-tiny", "--crop", "face", "--detector", "mtcnn", "--precision", "fp32", "--device", "cpu", *paths]) == 0
    printed = [float(line.split(": ")[1].split()[0]) for line in capsys.readouterr().out.strip().splitlines()]
    (z,) = seen
    expected = (z[1:] @ z[0]).tolist()
    assert ui["similarity"] == pytest.approx(expected, abs=1e-5)
    assert ui["similarity"] == pytest.approx(printed, abs=6.1e-5)  # the 1e-5 above plus 4-decimal rounding
    assert ui["same"] == [s >= 0.4 for s in expected]
    table = ui["table"][0].splitlines()
    assert table[0].startswith("image,ref_0,similarity") and len(table) == 3


def test_more_references_take_photos_of_any_size(server):
    """From ComfyUI 0.33 on, `more_references` (Autogrow) adds reference photos of other sizes: each is one more
    column of the table, scored exactly as if it were the only reference. 0.3.64 has no Autogrow, so no such input."""
    info = server.get("/object_info")
    optional = {n: info[n]["input"].get("optional", {}) for n in ("StyleIDSimilarity", "StyleIDLikenessGate", "StyleIDGuidance")}
    if comfyui_version(server.copy) < (0, 33):
        assert not any("more_references" in o for o in optional.values())
        return
    assert all(o["more_references"][0] == "COMFY_AUTOGROW_V3" for o in optional.values())
    small = {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 200, "height": 232, "crop": "disabled"}}
    both = similarity_graph()
    both["7"] = small
    both["6"]["inputs"]["more_references.reference_0"] = ["7", 0]
    alone = similarity_graph()
    alone["7"] = small
    alone["6"]["inputs"]["reference"] = ["7", 0]
    tables = []
    for graph in (both, alone):
        result = server.run(graph)
        assert result["status"]["status_str"] == "success", result["status"]
        rows = [line.split(",") for line in result["outputs"]["6"]["table"][0].splitlines()[1:]]
        tables.append([[float(v) for v in row[1:-3]] for row in rows])  # ref columns, then the mean
    assert [len(row) for row in tables[0]] == [3, 3] and [len(row) for row in tables[1]] == [2, 2]
    for row_both, row_alone in zip(*tables):
        # the extra photo, as if it were the only one (the table has 6 decimals)
        assert row_both[1] == pytest.approx(row_alone[0], abs=2e-6)
        assert row_both[2] == pytest.approx((row_both[0] + row_both[1]) / 2, abs=2e-6)


def test_a_clip_from_load_video_gets_a_summary_and_a_curve(server):
    """LoadVideo → GetVideoComponents → StyleIDSimilarity(batch_is = video frames): per-frame scores, the per-clip
    summary (mean / min / no-face frames) and the curve shown on the node; the grey frames are counted, not dropped."""
    graph = {"1": load(FILES[0]), "2": loader(),
             "3": {"class_type": "LoadVideo", "inputs": {"file": CLIP}},
             "4": {"class_type": "GetVideoComponents", "inputs": {"video": ["3", 0]}},
             "5": {"class_type": "StyleIDSimilarity", "inputs": {"styleid_model": ["2", 0], "reference": ["1", 0], "images": ["4", 0],
                                                                 "threshold": 0.4, "batch_is": "video frames", "fps": ["4", 2]}}}
    result = server.run(graph)
    assert result["status"]["status_str"] == "success", result["status"]
    ui = result["outputs"]["5"]
    (clip,) = ui["clip"]
    sims = ui["similarity"]
    assert clip["frames"] == len(sims) == 8
    assert clip["mean"] == pytest.approx(sum(sims) / 8, abs=1e-9) and clip["min"] == pytest.approx(min(sims), abs=1e-12)
    assert clip["no_face_frames"] == [i for i, ok in enumerate(ui["face_found"]) if not ok]
    assert set(GREY_FRAMES) <= set(clip["no_face_frames"])
    (curve,) = ui["images"]
    assert curve["type"] == "temp" and (server.copy / "temp" / curve["subfolder"] / curve["filename"]).is_file()


def test_gate_passing_nothing_does_not_abort_and_an_empty_reference_is_one_sentence(server):
    graph = similarity_graph()
    graph["7"] = {"class_type": "StyleIDLikenessGate", "inputs": {"styleid_model": ["5", 0], "reference": ["1", 0], "images": ["4", 0],
                                                                 "mode": "threshold", "threshold": 0.9999, "top_k": 1}}
    graph["8"] = {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}}
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["7", 1]}}
    result = server.run(graph)
    assert result["status"]["status_str"] == "success", result["status"]
    gate_ui = result["outputs"]["7"]
    assert gate_ui["indices"] == [] and gate_ui["scores"] == [] and sorted(gate_ui["rejected"]) == [0, 1]
    assert len(result["outputs"]["9"]["images"]) == 2 and "8" not in result["outputs"]  # skipped, not failed
    top = dict(graph)
    top["7"] = {**graph["7"], "inputs": {**graph["7"]["inputs"], "mode": "top_k", "top_k": 1}}
    ranked = server.run(top)["outputs"]["7"]
    sims = server.run(similarity_graph())["outputs"]["6"]["similarity"]
    assert ranked["indices"] == [max(range(2), key=lambda i: sims[i])] and ranked["scores"] == [pytest.approx(max(sims))]
    # on_empty=empty_batch: a 0-image IMAGE goes on; as a reference it is a node error, not a crash
    graph["7"]["inputs"]["on_empty"] = "empty_batch"
    del graph["8"]
    graph["10"] = {"class_type": "StyleIDSimilarity", "inputs": {"styleid_model": ["5", 0], "reference": ["7", 0], "images": ["4", 0], "threshold": 0.4}}
    assert error_of(server.run(graph)) == "reference: the image batch is empty; connect at least one image"


def test_an_image_without_a_face_is_scored_and_flagged(server):
    graph = similarity_graph()
    graph["7"] = {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 128, "batch_size": 1, "color": 8421504}}
    graph["6"]["inputs"]["images"] = ["7", 0]
    result = server.run(graph)
    assert result["status"]["status_str"] == "success", result["status"]
    ui = result["outputs"]["6"]
    assert ui["face_found"] == [False] and math.isfinite(ui["similarity"][0]) and "no (centre crop)" in ui["table"][0]


def test_a_model_folder_with_a_calibration_gives_likeness(server):
    from styleid_guidance import StyleIDEncoder

    folder = server.copy / "models" / "styleid" / "my-tiny"
    StyleIDEncoder.from_pretrained("test-tiny").save_pretrained(folder)
    (folder / "calibration.json").write_text(json.dumps({"slope": 8.0, "intercept": -4.0}))
    graph = similarity_graph()
    graph["5"] = loader(model="my-tiny")
    ui = server.run(graph)["outputs"]["6"]
    plain = server.run(similarity_graph())["outputs"]["6"]
    assert ui["similarity"] == pytest.approx(plain["similarity"], abs=1e-6)  # the same weights from disk
    assert plain["likeness_percent"] == [-1.0, -1.0]  # test-tiny has no calibration
    assert ui["likeness_percent"] == pytest.approx([100 / (1 + math.exp(-(8.0 * s - 4.0))) for s in ui["similarity"]])


@pytest.mark.parametrize("bad, message", [
    ("missing_model", "StyleID model 'my-styleid' not found: put it into "),
    ("missing_detector", "the retinaface detector needs detection_Resnet50_Final.pth in "),
    ("missing_jojogan", "JoJoGAN base 'ffhq' needs stylegan2-ffhq-config-f.pt and e4e_ffhq_encode.pt in "),
    ("wrong_rank", "images: IMAGE must have 4 dimensions [batch, height, width, channels], got shape (32, 32, 3)"),
    ("nan_scale", "scale must be a finite number, got nan"),
])
def test_bad_inputs_give_one_sentence_and_the_server_keeps_serving(server, bad, message):
    graph = similarity_graph()
    if bad == "missing_model":
        graph["5"] = loader(model="my-styleid")
    elif bad == "missing_detector":
        graph["5"] = loader(detector="retinaface")
    elif bad == "missing_jojogan":
        graph = {"1": load(FILES[1]),
                 "2": {"class_type": "JoJoGANTrain", "inputs": {"style": ["1", 0], "base": "ffhq", "id_loss": "none", "iterations": 1, "seed": 0,
                                                               "align": False, "preserve_color": False, "id_weight": 1.0, "save_name": ""}},
                 "3": {"class_type": "JoJoGANStylize", "inputs": {"face": ["1", 0], "style_checkpoint": "none", "base": "ffhq", "align": False,
                                                                 "jojogan": ["2", 0]}},
                 "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    elif bad == "wrong_rank":
        graph["7"] = {"class_type": "StyleIDTestRank3Image", "inputs": {}}
        graph["6"]["inputs"]["images"] = ["7", 0]
    else:
        graph = guided_graph(float("nan"))
    text = error_of(server.run(graph))
    assert message in text and "\n" not in text and "Traceback" not in text
    if bad.startswith("missing"):
        assert str(server.copy / "models" / ("jojogan" if bad == "missing_jojogan" else "styleid")) in text
    assert server.run(similarity_graph())["status"]["status_str"] == "success"  # still serving


def guided_graph(scale, seed=0):
    return {
        "1": load(FILES[0]),
        "2": {"class_type": "StyleIDTestTinyModels", "inputs": {"seed": 0}},
        "3": loader(),
        "4": {"class_type": "StyleIDGuidance", "inputs": {"model": ["2", 0], "vae": ["2", 1], "styleid_model": ["3", 0], "reference": ["1", 0],
                                                          "scale": scale, "start_percent": 0.0, "end_percent": 1.0, "every_n_steps": 1}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": seed, "steps": 4, "cfg": 5.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "positive": ["2", 2], "negative": ["2", 3], "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["2", 1]}},
        "8": {"class_type": "StyleIDSimilarity", "inputs": {"styleid_model": ["3", 0], "reference": ["1", 0], "images": ["7", 0], "threshold": 0.4}},
    }


def test_guided_ksampler_graph_raises_similarity(server):
    sims = {}
    for scale in (0.0, 0.5):
        result = server.run(guided_graph(scale))
        assert result["status"]["status_str"] == "success", result["status"]
        sims[scale] = result["outputs"]["8"]["similarity"][0]
    assert sims[0.5] > sims[0.0], sims


def test_jojogan_train_then_stylize_from_the_saved_checkpoint(server):
    graph = {
        "1": load(FILES[1]), "2": load(FILES[0]), "3": loader(),
        "4": {"class_type": "JoJoGANTrain", "inputs": {"style": ["1", 0], "base": "tiny", "id_loss": "styleid", "iterations": 2, "seed": 0,
                                                       "align": False, "preserve_color": False, "id_weight": 1.0, "save_name": "test_style",
                                                       "styleid_model": ["3", 0]}},
        "5": {"class_type": "JoJoGANStylize", "inputs": {"face": ["2", 0], "style_checkpoint": "none", "base": "tiny", "align": False, "jojogan": ["4", 0]}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }
    result = server.run(graph, timeout=300)
    assert result["status"]["status_str"] == "success", result["status"]
    assert len(result["outputs"]["6"]["images"]) == 1
    assert (server.copy / "models" / "jojogan" / "test_style.pt").is_file()
    again = {"2": load(FILES[0]),
             "5": {"class_type": "JoJoGANStylize", "inputs": {"face": ["2", 0], "style_checkpoint": "test_style.pt", "base": "tiny", "align": False}},
             "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}}}
    result = server.run(again, timeout=300)
    assert result["status"]["status_str"] == "success", result["status"]


def test_example_workflows_match_the_servers_nodes(server):
    """examples/comfyui: every API workflow names existing nodes and inputs with matching link types (the cubiq
    IPAdapter nodes, not installed here, against their published signatures), and each UI workflow is the one
    make_ui_workflows.py writes from it (STYLEID_WRITE_WORKFLOWS=1 rewrites them). Output slots that no link uses
    are left out of the comparison: they follow the ComfyUI version (SaveImage and PreviewImage declare an IMAGE
    output on 0.33, none on 0.3.64), and the frontend rebuilds them from the node definitions on load."""
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location("make_ui_workflows", REPO / "examples" / "comfyui" / "make_ui_workflows.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    info = server.get("/object_info")
    files = make.api_files()
    assert {f.name for f in files} == {"score_batch.api.json", "gate_best_of_n.api.json", "guided_sd15_ipadapter_faceid.api.json", "jojogan.api.json"}
    for f in files:
        api = json.loads(f.read_text())
        for nid, node in api.items():
            cls = node["class_type"]
            node_info = info.get(cls) or make.EXTERNAL.get(cls)
            assert node_info is not None, f"{f.name}: node {nid}: unknown node {cls}"
            known = {**node_info["input"].get("required", {}), **node_info["input"].get("optional", {})}
            assert set(node["inputs"]) <= set(known), f"{f.name}: {cls} has no input {set(node['inputs']) - set(known)}"
            missing = [n for n in node_info["input"].get("required", {}) if n not in node["inputs"]]
            assert not missing, f"{f.name}: {cls} lacks {missing}"
            for name, value in node["inputs"].items():
                if make._is_link(value):
                    src = api[value[0]]["class_type"]
                    out_type = (info.get(src) or make.EXTERNAL[src])["output"][value[1]]
                    assert make._type(known[name]) in (out_type, "*"), f"{f.name}: {src} → {cls}.{name}"  # "*": any type
        ui = make.ui_workflow(api, info)
        target = make.ui_path(f)
        if os.environ.get("STYLEID_WRITE_WORKFLOWS") == "1":
            target.write_text(json.dumps(ui, indent=2) + "\n")
        assert linked_only(json.loads(target.read_text())) == linked_only(ui), f"{target.name} is stale: rerun make_ui_workflows.py"


def linked_only(ui: dict) -> dict:
    """A UI workflow without the output slots that no link uses (the version-dependent part)."""
    ui = json.loads(json.dumps(ui))
    for node in ui["nodes"]:
        node["outputs"] = [o for o in node["outputs"] if o["links"]]
    return ui
