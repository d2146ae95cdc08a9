"""Write the UI-format workflows (what ComfyUI's Load / drag-and-drop opens) from the API-format ones here.

    python examples/comfyui/make_ui_workflows.py --url http://127.0.0.1:8188   # a running ComfyUI with the pack

The API files (`*.api.json`, what POST /prompt takes) are the source; node layout is a simple left-to-right
placement by graph depth. Input order, output types and names come from the server's /object_info; the cubiq
IPAdapter_plus nodes, which are not installed here, from EXTERNAL (their published INPUT_TYPES).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

# ComfyUI_IPAdapter_plus (cubiq), as its nodes declare them; only what the examples use
EXTERNAL: dict[str, dict[str, Any]] = {
    "IPAdapterUnifiedLoaderFaceID": {
        "input": {"required": {"model": ["MODEL"], "preset": [["FACEID", "FACEID PLUS - SD1.5 only", "FACEID PLUS V2", "FACEID PORTRAIT (style transfer)"]],
                               "lora_strength": ["FLOAT", {}], "provider": [["CPU", "CUDA", "ROCM", "DirectML", "OpenVINO", "CoreML"]]},
                  "optional": {"ipadapter": ["IPADAPTER"]}},
        "input_order": {"required": ["model", "preset", "lora_strength", "provider"], "optional": ["ipadapter"]},
        "output": ["MODEL", "IPADAPTER"], "output_name": ["MODEL", "ipadapter"],
    },
    "IPAdapterFaceID": {
        "input": {"required": {"model": ["MODEL"], "ipadapter": ["IPADAPTER"], "image": ["IMAGE"], "weight": ["FLOAT", {}],
                               "weight_faceidv2": ["FLOAT", {}], "weight_type": [["linear"]], "combine_embeds": [["concat"]],
                               "start_at": ["FLOAT", {}], "end_at": ["FLOAT", {}], "embeds_scaling": [["V only"]]},
                  "optional": {"image_negative": ["IMAGE"], "attn_mask": ["MASK"], "clip_vision": ["CLIP_VISION"], "insightface": ["INSIGHTFACE"]}},
        "input_order": {"required": ["model", "ipadapter", "image", "weight", "weight_faceidv2", "weight_type", "combine_embeds",
                                     "start_at", "end_at", "embeds_scaling"],
                        "optional": ["image_negative", "attn_mask", "clip_vision", "insightface"]},
        "output": ["MODEL", "IMAGE"], "output_name": ["MODEL", "face_image"],
    },
}


def _type(spec: list) -> str:
    return "COMBO" if isinstance(spec[0], list) else str(spec[0])


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def ui_workflow(api: dict[str, dict], object_info: dict[str, dict]) -> dict[str, Any]:
    """API-format prompt → UI-format workflow (LiteGraph serialisation, version 0.4)."""
    info = {**EXTERNAL, **object_info}
    depth: dict[str, int] = {}

    def level(nid: str) -> int:
        if nid not in depth:
            ups = [v[0] for v in api[nid]["inputs"].values() if _is_link(v)]
            depth[nid] = 1 + max((level(u) for u in ups), default=-1)
        return depth[nid]

    rows: dict[int, int] = {}
    nodes, links = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    for nid in sorted(api, key=int):
        node = api[nid]
        spec = info[node["class_type"]]
        order = [("required", n) for n in spec["input_order"].get("required", [])] + \
                [("optional", n) for n in spec["input_order"].get("optional", [])]
        inputs, widgets = [], []
        for cat, name in order:
            s = spec["input"][cat][name]
            kind = _type(s)
            value = node["inputs"].get(name)
            if _is_link(value):
                link_id = len(links) + 1
                src, slot = value
                links.append([link_id, int(src), slot, int(nid), len(inputs), info[api[src]["class_type"]]["output"][slot]])
                out_links.setdefault((src, slot), []).append(link_id)
                entry = {"name": name, "type": kind, "link": link_id}
                if kind in WIDGET_TYPES:
                    entry["widget"] = {"name": name}
                inputs.append(entry)
            elif kind in WIDGET_TYPES and name in node["inputs"]:
                widgets.append(value)
                extra = s[1] if len(s) > 1 and isinstance(s[1], dict) else {}
                if extra.get("control_after_generate"):
                    widgets.append("fixed")  # the frontend's seed-control widget
                if extra.get("image_upload"):
                    widgets.append("image")  # LoadImage's upload button
            elif kind not in WIDGET_TYPES and cat == "required":
                inputs.append({"name": name, "type": kind, "link": None})
        d = level(nid)
        row = rows.get(d, 0)
        rows[d] = row + 1
        nodes.append({"id": int(nid), "type": node["class_type"], "pos": [40 + 380 * d, 40 + 360 * row], "size": [320, 320],
                      "flags": {}, "order": 0, "mode": 0, "inputs": inputs, "outputs": [], "properties": {"Node name for S&R": node["class_type"]},
                      "widgets_values": widgets, "_title": node.get("_meta", {}).get("title")})
    for n in nodes:
        spec = info[n["type"]]
        n["outputs"] = [{"name": spec["output_name"][i], "type": t, "links": out_links.get((str(n["id"]), i), []), "slot_index": i}
                        for i, t in enumerate(spec["output"])]
        title = n.pop("_title")
        if title:
            n["title"] = title
    for i, n in enumerate(sorted(nodes, key=lambda n: (level(str(n["id"])), n["id"]))):
        n["order"] = i
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def api_files() -> list[Path]:
    return sorted(HERE.glob("*.api.json"))


def ui_path(api_file: Path) -> Path:
    return api_file.with_name(api_file.name.replace(".api.json", ".json"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8188", help="a running ComfyUI with the StyleID pack (default: %(default)s)")
    args = p.parse_args(argv)
    with urllib.request.urlopen(args.url.rstrip("/") + "/object_info", timeout=60) as r:
        object_info = json.loads(r.read())
    for f in api_files():
        ui_path(f).write_text(json.dumps(ui_workflow(json.loads(f.read_text()), object_info), indent=2) + "\n")
        print(f"wrote {ui_path(f).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
