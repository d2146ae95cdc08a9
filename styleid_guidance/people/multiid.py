"""WithAnyone's MultiID-Bench layout (`styleid score --layout multiid-bench ROOT`): Sim(Ref), Sim(GT) and the
copy-paste measure per person, for StyleID and any baseline model.

ROOT holds one folder per case: out.jpg (generated), ref_1.jpg ... ref_4.jpg (one reference photo per person;
as many as the case has people), ori.jpg (the ground-truth photo the references were not taken from) and
meta.json (the prompt). Per case and model:

  * the generated faces are assigned to the references by the Hungarian assignment (no threshold, as the
    benchmark does): Sim(Ref) = cos(g, r) for each person's generated face g and reference r;
  * the faces of ori.jpg are assigned to the references the same way, giving each person's ground-truth face t:
    Sim(GT) = cos(g, t);
  * copy-paste (WithAnyone, Xu et al. 2025), with θ(a, b) = arccos cos(a, b) the angle between embeddings:

        CP = (θ(g, t) − θ(g, r)) / max(θ(t, r), ε)          (0 when θ(t, r) < ε = 1e-6)

    By the triangle inequality on the sphere CP lies in [−1, 1]: +1 when g is the reference itself (copied),
    −1 when g is the ground-truth face; a model that rewards copying pushes it up.

The triplet (g, t, r) is one person's: t is matched to r through the references, where the benchmark's own script
matches g to t by a separate Hungarian assignment on cos(g, t); both agree when each face resembles its person.
A reference's largest face is used (the benchmark takes the detector's first face); a reference without a
detectable face is embedded from its centre crop and counted (no_face_refs). A person the generated image has no
face for is missing (fewer faces than references).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import StyleIDError
from ..faces.detection import Face
from ..options import DEFAULT_DETECTOR, RELEASED_MODEL
from .assign import cosine_matrix, hungarian
from .embedding import embed_crops, embed_files, faces_of, load_model
from .faces import face_crop

LAYOUTS = ("multiid-bench",)
OUT, ORI, META = "out.jpg", "ori.jpg", "meta.json"
MAX_REFS = 4
EPS = 1e-6


def copy_paste(gen: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray,
               eps: float = EPS) -> float:
    """WithAnyone's copy-paste measure of one generated face (module doc): (θ_gt − θ_gr) / θ_tr."""
    g, t, r = (np.asarray(torch.as_tensor(v).detach().cpu().double().numpy()).ravel() for v in (gen, gt, ref))
    g, t, r = (v / max(float(np.linalg.norm(v)), 1e-12) for v in (g, t, r))
    angle = lambda a, b: math.acos(float(np.clip(a @ b, -1.0, 1.0)))
    theta_tr = angle(t, r)
    if theta_tr < eps:
        return 0.0
    return (angle(g, t) - angle(g, r)) / theta_tr


@dataclass
class Case:
    name: str
    out: Path
    refs: list[Path]
    ori: Path | None
    prompt: str | None


@dataclass
class CaseScore:
    case: str
    people: dict[str, dict[str, float | None]] = field(default_factory=dict)  # ref_k → sim_ref, sim_gt, copy_paste
    no_face_refs: list[str] = field(default_factory=list)  # references embedded from their centre crop (no face found)


def read_layout(root: str | Path) -> list[Case]:
    """ROOT → its cases (sorted), each checked: out.jpg and ref_1.jpg present, refs numbered without gaps,
    meta.json (where present) a JSON object."""
    folder = Path(root)
    if not folder.is_dir():
        raise StyleIDError(f"{root}: --layout multiid-bench needs the benchmark's root folder (one folder per case with "
                           f"{OUT}, ref_1.jpg ... and {ORI})")
    cases = []
    for case in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        refs = []
        for k in range(1, MAX_REFS + 1):
            if (case / f"ref_{k}.jpg").is_file():
                if len(refs) != k - 1:
                    raise StyleIDError(f"{case}: ref_{k}.jpg without ref_{len(refs) + 1}.jpg; number the references "
                                       "from 1 without gaps")
                refs.append(case / f"ref_{k}.jpg")
        if not (case / OUT).is_file() or not refs:
            raise StyleIDError(f"{case}: a MultiID-Bench case needs {OUT} and ref_1.jpg (found: "
                               f"{', '.join(sorted(p.name for p in case.iterdir())) or 'nothing'})")
        prompt = None
        if (case / META).is_file():
            try:
                meta = json.loads((case / META).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise StyleIDError(f"{case / META}: not readable JSON ({err}); fix or remove it") from None
            if not isinstance(meta, dict):
                raise StyleIDError(f"{case / META}: expected an object such as {{\"prompt\": \"...\"}}")
            prompt = meta.get("prompt")
        cases.append(Case(case.name, case / OUT, refs, case / ORI if (case / ORI).is_file() else None, prompt))
    if not cases:
        raise StyleIDError(f"{root}: no case folders; MultiID-Bench has one folder per case (id1/out.jpg, id1/ref_1.jpg ...)")
    return cases


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


@dataclass
class BenchScore:
    root: str
    models: dict[str, str]
    cases: list[Case]
    scores: dict[str, list[CaseScore]]  # model → per case

    def model_summary(self, model: str) -> dict[str, Any]:
        people = [p for c in self.scores[model] for p in c.people.values()]
        return {"model": self.models[model], "sim_ref": _mean([p["sim_ref"] for p in people]),
                "sim_gt": _mean([p["sim_gt"] for p in people]), "copy_paste": _mean([p["copy_paste"] for p in people]),
                "cases": len(self.cases), "people": len(people), "missing": sum(p["sim_ref"] is None for p in people),
                "no_face_refs": sum(len(c.no_face_refs) for c in self.scores[model])}

    def line(self, model: str) -> str:
        """`StyleID: Sim(Ref)=0.712 Sim(GT)=0.650 CP=0.120 (cases=10, people=25, missing=1)`."""
        s = self.model_summary(model)
        fmt = lambda v: "undefined" if v is None else f"{v:.3f}"
        extra = f", no_face_refs={s['no_face_refs']}" if s["no_face_refs"] else ""
        return (f"{model}: Sim(Ref)={fmt(s['sim_ref'])} Sim(GT)={fmt(s['sim_gt'])} CP={fmt(s['copy_paste'])} "
                f"(cases={s['cases']}, people={s['people']}, missing={s['missing']}{extra})")

    def rows(self) -> list[dict[str, Any]]:
        f = lambda v: "" if v is None else f"{v:.6f}"
        return [{"model": m, "case": c.case, "person": name, "sim_ref": f(p["sim_ref"]), "sim_gt": f(p["sim_gt"]),
                 "copy_paste": f(p["copy_paste"])} for m, cs in self.scores.items() for c in cs for name, p in c.people.items()]

    def summary(self) -> dict[str, Any]:
        return {"mode": "multiid-bench", "root": self.root, "models": {m: self.model_summary(m) for m in self.models},
                "cases": [{"case": c.name, "prompt": c.prompt,
                           "models": {m: self.scores[m][k].people for m in self.models},
                           "no_face_refs": {m: self.scores[m][k].no_face_refs for m in self.models}}
                          for k, c in enumerate(self.cases)]}


def _faces_embedded(model: Any, image: Path, faces: list[Face]) -> torch.Tensor:
    return embed_crops(model, [face_crop(image, f) for f in faces])[0]


def score_case(z_refs: torch.Tensor, z_out: torch.Tensor, z_ori: torch.Tensor | None, names: Sequence[str]) -> CaseScore:
    """One case from its embeddings: references [P, D], generated faces [F, D], ground-truth faces [G, D] or None."""
    out = CaseScore("")
    s_out = cosine_matrix(z_out, z_refs)
    gen_of = {p: f for f, p in hungarian(s_out)}
    gt_of = {p: g for g, p in hungarian(cosine_matrix(z_ori, z_refs))} if z_ori is not None else {}
    for p, name in enumerate(names):
        f, g = gen_of.get(p), gt_of.get(p)
        row: dict[str, float | None] = {"sim_ref": None if f is None else float(s_out[f, p]), "sim_gt": None,
                                        "copy_paste": None}
        if f is not None and g is not None and z_ori is not None:  # the person's ground-truth face exists
            row["sim_gt"] = float(cosine_matrix(z_out[f:f + 1], z_ori[g:g + 1])[0, 0])
            row["copy_paste"] = copy_paste(z_out[f], z_ori[g], z_refs[p])
        out.people[name] = row
    return out


def score_layout(root: str | Path, models: Sequence[str] | None = None, *, device: str | None = None,
                 precision: str = "fp32", batch_size: int = 32, detector: str = DEFAULT_DETECTOR,
                 model_rootpath: str | None = None) -> BenchScore:
    """Sim(Ref), Sim(GT) and copy-paste per person of every MultiID-Bench case, for each model (module doc)."""
    from ..devices import resolve_device, resolve_precision
    from ..score.models import parse_models

    cases = read_layout(root)
    specs = parse_models(list(models or [RELEASED_MODEL]))
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    out_faces = faces_of([c.out for c in cases], detector, model_rootpath, str(dev))
    ori_faces = faces_of([c.ori for c in cases if c.ori is not None], detector, model_rootpath, str(dev))
    scores: dict[str, list[CaseScore]] = {}
    for spec in specs:
        model = load_model(spec, dev, prec, batch_size, detector, model_rootpath)
        per_case, ori_iter = [], iter(ori_faces)
        for case, faces in zip(cases, out_faces):
            z_refs, status = embed_files(model, case.refs)
            z_ori = _faces_embedded(model, case.ori, next(ori_iter)) if case.ori is not None else None
            cs = score_case(z_refs, _faces_embedded(model, case.out, faces), z_ori, [p.stem for p in case.refs])
            cs.case = case.name
            cs.no_face_refs = [p.name for p, st in zip(case.refs, status) if st != "ok"]
            per_case.append(cs)
        scores[spec.name] = per_case
    return BenchScore(str(root), {s.name: s.source for s in specs}, cases, scores)
