"""StyleIDLoader, StyleIDSimilarity, StyleIDLikenessGate: ComfyUI V3 nodes (`comfy_api.latest`)."""
from __future__ import annotations

import json

import torch
from comfy_api.latest import io, ui
# The one name from outside comfy_api.latest: the public NodeOutput(block_execution=...) blocks every output of a
# node, and always with an error message, while the gate must silently block only `accepted` (and `rejected`) and
# keep its scores flowing. ExecutionBlocker has been in comfy_execution since 2024 and is in both tested versions.
from comfy_execution.graph_utils import ExecutionBlocker

from styleid_guidance.errors import StyleIDError
from styleid_guidance.options import DEFAULT_THRESHOLD

from . import models
from .images import bchw_to_image, check_finite, empty_image, image_to_bchw, reference_photos
from .people import FACE_MODES, check_face_mode, score_all_faces
from .scoring import GATE_MODES, annotate, clip_summary, curve_image, gate, score

CATEGORY = "StyleID"
StyleIDModelType = io.Custom("STYLEID_MODEL")
# what an output with no images carries: "skip_downstream" blocks the nodes fed by it, silently (ComfyUI's
# ExecutionBlocker without a message; core nodes such as SaveImage fail on a 0-image batch), while the rest of
# the workflow runs; "empty_batch" passes a [0,H,W,3] IMAGE for nodes that handle one
ON_EMPTY = ("skip_downstream", "empty_batch")
MAX_MORE_REFERENCES = 8
# what the `images` batch is: separate pictures, or the frames of one clip (LoadVideo → GetVideoComponents)
BATCH_KINDS = ("images", "video frames")


def people_inputs() -> list[io.Input]:
    """faces = all: every face of each image, assigned to the people of the reference photos (one photo each)."""
    return [io.Combo.Input("faces", options=list(FACE_MODES), default="largest", optional=True,
                           tooltip="largest: the largest face against every reference photo of one person; all: every "
                                   "face, assigned to the people of the reference photos (one photo per person)"),
            io.String.Input("people", default="", optional=True,
                            tooltip="faces = all: the reference photos' names, comma-separated, in order "
                                    "(empty: person_1, person_2, ...)")]


def more_references_input() -> list[io.Input]:
    """Extra reference photos, one socket each, growing as they are connected: photos of any size, which one IMAGE
    batch cannot hold. Autogrow exists from ComfyUI 0.33 on (0.3.64 has none: batch the photos into `reference`)."""
    if not hasattr(io, "Autogrow"):
        return []
    template = io.Autogrow.TemplatePrefix(io.Image.Input("reference"), prefix="reference_", min=0, max=MAX_MORE_REFERENCES)
    return [io.Autogrow.Input("more_references", template=template, optional=True,
                              tooltip="more photos of the same person, each of any size")]


class StyleIDLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleIDLoader",
            display_name="Load StyleID Model",
            category=CATEGORY,
            description="A StyleID encoder, a distilled student or an ArcFace baseline from ComfyUI/models/styleid "
                        "(never downloaded), or test-tiny (random, offline, scores mean nothing).",
            inputs=[
                io.Combo.Input("model", options=models.styleid_choices(), default=models.TEST_TINY,
                               tooltip="a model folder (StyleID / student) or an ArcFace .pth in ComfyUI/models/styleid"),
                io.Combo.Input("device", options=list(models.DEVICES), default="auto"),
                io.Combo.Input("precision", options=list(models.PRECISIONS), default="fp32",
                               tooltip="fp32 gives the scores `styleid verify --precision fp32` gives on the same pixels "
                                        "(newer ComfyUIs decode JPEGs in LoadImage with PyAV, whose pixels differ "
                                        "from PIL's; compare on PNGs)"),
                io.Combo.Input("detector", options=list(models.DETECTORS), default=models.OFFLINE_DETECTOR,
                               tooltip="mtcnn ships its weights (CPU, no insightface build); retinaface needs "
                                       "detection_Resnet50_Final.pth in ComfyUI/models/styleid"),
            ],
            outputs=[StyleIDModelType.Output("styleid_model", display_name="styleid_model")],
        )

    @classmethod
    def validate_inputs(cls, model: str) -> bool | str:
        # our own check instead of ComfyUI's "value not in list": a missing model says which folder to fill
        if model == models.TEST_TINY or model in models.styleid_choices():
            return True
        return f"StyleID model {model!r} not found: put it into {models.default_dir(models.STYLEID_FOLDER)} (nothing is downloaded)"

    @classmethod
    def execute(cls, model: str, device: str, precision: str, detector: str) -> io.NodeOutput:
        return io.NodeOutput(models.load_styleid_model(model, device=device, precision=precision, detector=detector))


class StyleIDSimilarity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleIDSimilarity",
            display_name="StyleID Similarity",
            category=CATEGORY,
            description="Cosine similarity of each image to the reference photo(s) of one person, verdicts at a "
                        "threshold, a likeness percentage where the model has a calibration, an N×R CSV table and an "
                        "annotated preview. An image without a face is scored on its centre crop and flagged. With "
                        "batch_is = video frames the batch is one clip: a per-clip summary (mean / min / no-face "
                        "frames) and the similarity curve are shown.",
            is_output_node=True,
            inputs=[
                StyleIDModelType.Input("styleid_model"),
                io.Image.Input("reference", tooltip="one or several photos of the person"),
                io.Image.Input("images"),
                io.Float.Input("threshold", default=DEFAULT_THRESHOLD, min=-1.0, max=1.0, step=0.01),
                io.Combo.Input("batch_is", options=list(BATCH_KINDS), default="images", optional=True,
                               tooltip="video frames: the batch is one clip (GetVideoComponents' images)"),
                io.Float.Input("fps", default=0.0, min=0.0, max=1000.0, optional=True,
                               tooltip="the clip's frame rate (GetVideoComponents' fps) for a time axis; 0 = frames"),
                *people_inputs(),
                *more_references_input(),
            ],
            outputs=[
                io.Float.Output("similarity", display_name="similarity", is_output_list=True),
                io.Boolean.Output("same", display_name="same", is_output_list=True),
                io.Float.Output("likeness_percent", display_name="likeness_percent", is_output_list=True,
                                tooltip="-1 where no calibration exists"),
                io.String.Output("table", display_name="table"),
                io.Image.Output("preview", display_name="preview"),
            ],
        )

    @classmethod
    def execute(cls, styleid_model: models.StyleIDModel, reference: torch.Tensor, images: torch.Tensor,
                threshold: float, batch_is: str = "images", fps: float = 0.0, faces: str = "largest",
                people: str = "", more_references: dict | None = None) -> io.NodeOutput:
        threshold = check_finite(threshold, "threshold")
        if batch_is not in BATCH_KINDS:
            raise StyleIDError(f"batch_is must be one of {', '.join(BATCH_KINDS)}, got {batch_is!r}")
        fps = check_finite(fps, "fps")
        refs = reference_photos(reference, more_references)
        x = image_to_bchw(images, "images")
        if check_face_mode(faces) == "all":  # one row per (image, person) in the table; the preview names every face
            ps = score_all_faces(styleid_model, refs, people, x, threshold)
            likeness = [-1.0 if (v := styleid_model.likeness(m)) is None else v for m in ps.similarity]
            shown = {"similarity": ps.similarity, "same": ps.same, "likeness_percent": likeness, "people": ps.ui(),
                     "table": [ps.table()]}
            return io.NodeOutput(ps.similarity, ps.same, likeness, ps.table(), bchw_to_image(ps.preview(x)), ui=shown)
        s = score(styleid_model, refs, x, threshold)
        likeness = [-1.0 if v is None else v for v in s.likeness]
        shown = {"similarity": s.similarity, "same": s.same, "likeness_percent": likeness, "face_found": s.face_found,
                 "reference_face_found": s.reference_face_found, "table": [s.csv()]}
        if batch_is == "video frames":
            shown["clip"] = [clip_summary(s)]
            curve = bchw_to_image(curve_image(s, fps if fps > 0 else None))
            shown |= ui.PreviewImage(curve, cls=cls).as_dict()  # the curve, shown on the node
        return io.NodeOutput(s.similarity, s.same, likeness, s.csv(), bchw_to_image(annotate(x, s)), ui=shown)


class StyleIDLikenessGate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleIDLikenessGate",
            display_name="StyleID Likeness Gate",
            category=CATEGORY,
            description="Sort a batch by StyleID similarity to the reference and split it: the best top_k, those above "
                        "the threshold, or both. When nothing passes the workflow goes on: the nodes fed by `accepted` "
                        "are skipped (on_empty=skip_downstream) or get an empty batch (empty_batch).",
            is_output_node=True,
            inputs=[
                StyleIDModelType.Input("styleid_model"),
                io.Image.Input("reference"),
                io.Image.Input("images"),
                io.Combo.Input("mode", options=list(GATE_MODES), default="threshold"),
                io.Float.Input("threshold", default=DEFAULT_THRESHOLD, min=-1.0, max=1.0, step=0.01),
                io.Int.Input("top_k", default=1, min=1, max=4096),
                io.Combo.Input("on_empty", options=list(ON_EMPTY), default="skip_downstream", optional=True),
                *people_inputs(),
                *more_references_input(),
            ],
            outputs=[
                io.Image.Output("accepted", display_name="accepted"),
                io.Image.Output("rejected", display_name="rejected"),
                io.String.Output("scores", display_name="scores", tooltip="JSON list: similarities of the accepted images, best first"),
                io.String.Output("indices", display_name="indices", tooltip="JSON list: batch indices of the accepted images, best first"),
                io.Int.Output("count", display_name="count"),
            ],
        )

    @classmethod
    def execute(cls, styleid_model: models.StyleIDModel, reference: torch.Tensor, images: torch.Tensor, mode: str,
                threshold: float, top_k: int, on_empty: str = "skip_downstream", faces: str = "largest",
                people: str = "", more_references: dict | None = None) -> io.NodeOutput:
        threshold = check_finite(threshold, "threshold")
        refs = reference_photos(reference, more_references)
        x = image_to_bchw(images, "images")
        if check_face_mode(faces) == "all":  # an image passes on its weakest person (a missing one counts -1): everyone recognisable
            sims = score_all_faces(styleid_model, refs, people, x, threshold).lowest
        else:
            sims = score(styleid_model, refs, x, threshold).similarity
        result = gate(sims, mode, threshold, int(top_k))
        h, w = x.shape[-2:]

        def pick(idx: list[int]) -> torch.Tensor | ExecutionBlocker:
            if idx:
                return bchw_to_image(x[idx])
            return empty_image(h, w) if on_empty == "empty_batch" else ExecutionBlocker(None)

        shown = {"indices": result.accepted, "scores": result.scores, "rejected": result.rejected}
        return io.NodeOutput(pick(result.accepted), pick(result.rejected), json.dumps(result.scores),
                             json.dumps(result.accepted), len(result.accepted), ui=shown)
