"""`styleid eval`: verification metrics of StyleID and baselines on StyleBench-H-style pair lists.

    styleid eval --model ID_OR_DIR --pairs pairs.csv --out DIR [--crop center] [--baseline clip ...]

pairs.csv columns: `source,stylized,label` (paths relative to the CSV, label 1 = same person) plus
optional `split,method,style,strength,human` (`human` is carried along, not scored).

Writes to DIR:
    metrics.json                 {model: {"overall": report, "split": {name: report}, "method": ...,
                                  "style": ..., "strength": ...}}, report = verification_report keys
    table.md                     the paper's Table 1 layout: one row per model, one column per split,
                                  cells TPR@1e-2 / Acc@0.3 / Acc@0.4 / Acc@0.5 / AUROC
    roc.png, roc_log.png         ROC curves of every model, linear and log-FPR axes
    similarity_vs_strength.png   mean same-identity (solid) and different-identity (dashed) cosine
                                  against strength, one panel per method
    embedding_cache/             embeddings keyed by model + file (+ mtime/size) + crop, so adding a
                                  baseline later computes only the new model's embeddings

Baselines: `clip` (open_clip ViT-L-14/openai, no LoRA), `siglip2` (open_clip ViT-L-16-SigLIP2-256/
webli), `arcface` (facexlib IR-SE50). `NAME=MODEL` overrides the weights: an open_clip
`name[/pretrained]` for clip/siglip2 (`clip=test-tiny` is the offline random test model), and a
weights file/folder for arcface (`arcface=random` is a random IR-SE50, for tests).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .errors import StyleIDError
from .images import atomic_write
from .metrics import mean_pairwise_cosine, roc_curve, verification_report
from .preprocess import CROPS

BASELINES = {"clip": "ViT-L-14/openai", "siglip2": "ViT-L-16-SigLIP2-256/webli", "arcface": "default"}
GROUPS = ("split", "method", "style", "strength")
CACHE_FOLDER = "embedding_cache"
TABLE_COLUMNS = ("tpr@1e-2", "acc@0.3", "acc@0.4", "acc@0.5", "auroc")


# ---------------------------------------------------------------------- pairs
@dataclass(frozen=True)
class Pair:
    source: Path
    stylized: Path
    label: int
    split: str | None = None
    method: str | None = None
    style: str | None = None
    strength: str | None = None
    human: str | None = None


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Parse and check a pairs CSV; every problem names the file and row."""
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"--pairs {path}: no such file")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("source", "stylized", "label") if c not in columns]
        if missing:
            raise StyleIDError(f"{path}: missing column(s) {', '.join(missing)} (need source,stylized,label)")
        pairs = []
        for row_number, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if row["label"] not in ("0", "1"):
                raise StyleIDError(f"{path}:{row_number}: label must be 0 or 1, got {row['label']!r}")
            files = []
            for column in ("source", "stylized"):
                file = (path.parent / row[column]).resolve()
                if not row[column] or not file.is_file():
                    raise StyleIDError(f"{path}:{row_number}: {column} image {row[column]!r} not found (paths are relative to the CSV)")
                files.append(file)
            extra = {c: (row.get(c) or None) for c in (*GROUPS, "human")}
            pairs.append(Pair(files[0], files[1], int(row["label"]), **extra))
    if not pairs:
        raise StyleIDError(f"{path}: no pairs")
    return pairs


# ---------------------------------------------------------------------- models
@dataclass
class ModelSpec:
    """A model to evaluate: its display name, kind (styleid | clip | siglip2 | arcface) and weights."""

    name: str
    kind: str
    source: str

    @property
    def key(self) -> str:
        """Identifies the weights for the cache; a local folder's files' mtimes and sizes are part of it."""
        path = Path(self.source)
        if path.exists():
            files = sorted(p for p in (path.rglob("*") if path.is_dir() else [path]) if p.is_file())
            stamp = ";".join(f"{p.relative_to(path) if path.is_dir() else p.name}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in files)
            return f"{self.kind}:{path.resolve()}:{stamp}"
        return f"{self.kind}:{self.source}"


def parse_baseline(text: str) -> ModelSpec:
    kind, _, override = text.partition("=")
    kind = kind.strip().lower()
    if kind not in BASELINES:
        raise StyleIDError(f"--baseline {text!r}: choose from {', '.join(BASELINES)} (optionally NAME=MODEL)")
    return ModelSpec(kind, kind, override.strip() or BASELINES[kind])


Embedder = Callable[[Sequence[Path]], torch.Tensor]


def build_embedder(spec: ModelSpec, crop: str, device: torch.device, batch_size: int, detector: str,
                   model_rootpath: str | None) -> Embedder:
    """Load the model and return files → [N,D] normalised embeddings."""
    from .encoder import StyleIDEncoder

    if spec.kind == "arcface":
        from .arcface import build_arcface_backbone
        from .identity import build_identity_loss

        if spec.source == "random":
            torch.manual_seed(0)  # deterministic, so cached and fresh embeddings agree
            model: Any = build_arcface_backbone()
        else:
            model = None if spec.source == "default" else spec.source
        loss = build_identity_loss("arcface", model=model, device=device, crop=crop, detector=detector,
                                   model_rootpath=model_rootpath)

        def embed_arcface(files: Sequence[Path]) -> torch.Tensor:
            return loss.embed_photos([str(f) for f in files])

        return embed_arcface

    if spec.kind == "styleid":
        encoder = StyleIDEncoder.from_pretrained(spec.source, device=device)
    else:
        name, _, pretrained = spec.source.partition("/")
        pretrained = None if name == "test-tiny" else (pretrained or "openai")
        torch.manual_seed(0)  # random test models must be the same on every run for the cache to hold
        encoder = StyleIDEncoder.from_open_clip(name, pretrained=pretrained, lora_rank=0, device=device)
    encoder.eval()

    def embed_encoder(files: Sequence[Path]) -> torch.Tensor:
        return encoder.embed([str(f) for f in files], crop=crop, batch_size=batch_size, detector=detector,
                             model_rootpath=model_rootpath)

    return embed_encoder


# ---------------------------------------------------------------------- cache
def file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_mtime_ns}:{st.st_size}"


class EmbeddingCache:
    """One safetensors file per (model, crop); one tensor per image, named by a hash of its file key."""

    def __init__(self, folder: Path, model_key: str, crop: str) -> None:
        digest = hashlib.sha1(f"{model_key}|crop={crop}".encode()).hexdigest()[:20]
        self.path = Path(folder) / f"{digest}.safetensors"
        self.model_key, self.crop = model_key, crop
        self.entries: dict[str, torch.Tensor] = {}
        self.dirty = False
        if self.path.exists():
            from safetensors.torch import load_file

            try:
                self.entries = load_file(str(self.path))
            except Exception:  # a damaged cache is only a cache: start over
                self.entries = {}

    @staticmethod
    def _name(path: Path) -> str:
        return hashlib.sha1(file_key(path).encode()).hexdigest()

    def get(self, path: Path) -> torch.Tensor | None:
        return self.entries.get(self._name(path))

    def put(self, path: Path, embedding: torch.Tensor) -> None:
        self.entries[self._name(path)] = embedding.detach().float().cpu().contiguous()
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        from safetensors.torch import save_file

        with atomic_write(self.path) as tmp:
            save_file(self.entries, str(tmp), metadata={"model": self.model_key[:2000], "crop": self.crop})
        self.dirty = False


def embed_with_cache(files: Sequence[Path], spec: ModelSpec, crop: str, cache_dir: Path | None,
                     make_embedder: Callable[[], Embedder], batch_size: int = 32, progress: bool = True) -> tuple[dict[Path, torch.Tensor], int]:
    """Embeddings for `files`; returns (file → [D] tensor, number computed). Builds the model only on a miss."""
    from tqdm.auto import tqdm

    cache = EmbeddingCache(cache_dir, spec.key, crop) if cache_dir is not None else None
    result: dict[Path, torch.Tensor] = {}
    missing = []
    for f in files:
        hit = cache.get(f) if cache is not None else None
        if hit is not None:
            result[f] = hit
        else:
            missing.append(f)
    if missing:
        embedder = make_embedder()
        chunk = max(1, batch_size)
        with torch.inference_mode():
            for i in tqdm(range(0, len(missing), chunk), desc=f"embedding ({spec.name})", unit="batch", disable=not progress):
                batch = missing[i : i + chunk]
                z = embedder(batch).float().cpu()
                for f, e in zip(batch, z):
                    result[f] = e
                    if cache is not None:
                        cache.put(f, e)
                if cache is not None and (i // chunk) % 20 == 19:
                    cache.save()  # long runs keep what they computed if interrupted
        if cache is not None:
            cache.save()
    return result, len(missing)


# ---------------------------------------------------------------------- metrics
def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN: an undefined metric (e.g. AUROC of an all-positive group) is null
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _group_order(values: list[str]) -> list[str]:
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique  # names keep their order of appearance in the CSV


def pair_scores(pairs: Sequence[Pair], embeddings: dict[Path, torch.Tensor]) -> np.ndarray:
    src = torch.stack([embeddings[p.source] for p in pairs])
    sty = torch.stack([embeddings[p.stylized] for p in pairs])
    return (src * sty).sum(-1).double().numpy()


def model_metrics(pairs: Sequence[Pair], scores: np.ndarray) -> dict[str, Any]:
    labels = np.array([p.label for p in pairs])
    out: dict[str, Any] = {"overall": verification_report(scores, labels)}
    for group in GROUPS:
        values = [getattr(p, group) for p in pairs]
        if all(v is None for v in values):
            continue
        entries = {}
        for value in _group_order([v for v in values if v is not None]):
            mask = np.array([v == value for v in values])
            entries[value] = verification_report(scores[mask], labels[mask])
        out[group] = entries
    return out


class NonFiniteEmbeddings(StyleIDError):
    """A model produced NaN or inf embeddings (a diverged or damaged checkpoint)."""


def evaluate_encoder(encoder: Any, pairs: str | os.PathLike | Sequence[Pair], crop: str = "center",
                     batch_size: int = 32) -> dict[str, Any]:
    """Overall verification report of an in-memory encoder (used by the trainer's periodic eval), with
    per-split AUROC under "split_auroc" and the spread of the embeddings under "mean_cosine"."""
    pairs = read_pairs(pairs) if isinstance(pairs, (str, os.PathLike)) else list(pairs)
    files = list(dict.fromkeys([p.source for p in pairs] + [p.stylized for p in pairs]))
    # no_grad, not inference_mode: peft re-registers merged weights during the forward, and inference
    # tensors left in a model that goes on training would break its backward
    with torch.no_grad():
        z = encoder.embed([str(f) for f in files], crop=crop, batch_size=batch_size).float().cpu()
    if not torch.isfinite(z).all():
        raise NonFiniteEmbeddings(f"the encoder gives non-finite embeddings for {int((~torch.isfinite(z).all(1)).sum())} of {len(z)} images")
    embeddings = dict(zip(files, z))
    scores = pair_scores(pairs, embeddings)
    metrics = model_metrics(pairs, scores)
    report = dict(metrics["overall"])
    if "split" in metrics:
        report["split_auroc"] = {k: v["auroc"] for k, v in metrics["split"].items()}
    report["mean_cosine"] = float(mean_pairwise_cosine(z)) if len(z) > 1 else float("nan")
    return _clean(report)


# ---------------------------------------------------------------------- outputs
def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.3f}".lstrip("0") if 0 <= v < 1 else f"{v:.3f}"


def _pretty_split(name: str) -> str:
    return "-".join("ID" if w.lower() == "id" else w.capitalize() for w in name.split("-"))


def markdown_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Rows = models, columns = splits (+ All), cells TPR@1e-2/Acc@0.3/Acc@0.4/Acc@0.5/AUROC."""
    first = next(iter(metrics.values()))
    splits = list(first.get("split", {}))
    columns = [(s, _pretty_split(s)) for s in splits] + ([("__all__", "All")] if len(splits) != 1 else [])

    def report(model: dict[str, Any], split: str) -> dict[str, Any]:
        return model["overall"] if split == "__all__" else model["split"][split]

    best = {}
    for split, _ in columns:
        aurocs = {name: report(m, split).get("auroc") for name, m in metrics.items()}
        finite = {k: v for k, v in aurocs.items() if v is not None and math.isfinite(v)}
        best[split] = max(finite, key=finite.get) if len(finite) > 1 else None
    lines = [
        "Each cell: TPR@FPR=1e-2 / Acc@0.3 / Acc@0.4 / Acc@0.5 / AUROC (bold: best AUROC in the column).",
        "",
        "| Model | " + " | ".join(title for _, title in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, model in metrics.items():
        cells = []
        for split, _ in columns:
            r = report(model, split)
            cell = "/".join(_fmt(r.get(k)) for k in TABLE_COLUMNS)
            cells.append(f"**{cell}**" if best[split] == name else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    n = {split: report(first, split)["n"] for split, _ in columns}
    lines += ["", "Pairs per column: " + ", ".join(f"{title} {n[s]}" for s, title in columns) + "."]
    return "\n".join(lines) + "\n"


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_roc(scores: dict[str, np.ndarray], labels: np.ndarray, path: Path, log_fpr: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(s, labels)
        auc = verification_report(s, labels)["auroc"]
        if log_fpr:
            keep = fpr > 0
            ax.step(fpr[keep], tpr[keep], where="post", label=f"{name} (AUROC {auc:.3f})")
        else:
            ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
    if log_fpr:
        n_neg = int((labels == 0).sum())
        ax.set_xscale("log")
        # from the smallest FPR the negatives can resolve, and at least two decades wide
        ax.set_xlim(min(max(1e-4, 0.5 / max(n_neg, 1)), 1e-2), 1.0)
        ax.axvline(1e-2, color="grey", lw=0.8, ls=":")
    else:
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate" + (" (log)" if log_fpr else ""))
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC, {len(labels)} pairs")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    _save_figure(fig, path)


def plot_similarity_vs_strength(pairs: Sequence[Pair], scores: dict[str, np.ndarray], path: Path) -> bool:
    """One panel per method; x = strength, y = mean cosine of same (solid) / different (dashed) pairs."""
    if all(p.strength is None for p in pairs):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = _group_order([p.method or "all" for p in pairs])
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.6), squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, method in zip(axes[0], methods):
        sel = [i for i, p in enumerate(pairs) if (p.method or "all") == method and p.strength is not None]
        levels = _group_order([pairs[i].strength for i in sel])
        try:
            xs = [float(v) for v in levels]
        except ValueError:
            xs = list(range(len(levels)))
            ax.set_xticks(xs, levels)
        for k, (name, s) in enumerate(scores.items()):
            for label, style in ((1, "-"), (0, "--")):
                ys = []
                for level in levels:
                    vals = [s[i] for i in sel if pairs[i].strength == level and pairs[i].label == label]
                    ys.append(float(np.mean(vals)) if vals else np.nan)
                ax.plot(xs, ys, style, marker="o", ms=3, color=colours[k % len(colours)],
                        alpha=1.0 if label else 0.5, label=name if label else None)
        ax.set_title(method)
        ax.set_xlabel("strength")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean cosine (solid: same, dashed: different)")
    axes[0][-1].legend(fontsize=8)
    _save_figure(fig, path)
    return True


# ---------------------------------------------------------------------- API
@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    files: dict[str, Path]
    computed: dict[str, int] = field(default_factory=dict)  # embeddings computed (not cached) per model


def evaluate(
    model: str | os.PathLike | None,
    pairs: str | os.PathLike,
    out: str | os.PathLike,
    baselines: Sequence[str] = (),
    crop: str = "center",
    name: str = "styleid",
    device: str | torch.device | None = None,
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = "default",
    detector: str = "retinaface",
    model_rootpath: str | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate a StyleID encoder (Hub id or folder; None = baselines only) and baselines on `pairs`.

    cache_dir: "default" = OUT/embedding_cache, None = no cache."""
    if crop not in CROPS:
        raise StyleIDError(f"--crop must be one of {', '.join(CROPS)}, got {crop!r}")
    specs = [ModelSpec(name, "styleid", str(model))] if model is not None else []
    specs += [parse_baseline(b) for b in baselines]
    if not specs:
        raise StyleIDError("nothing to evaluate: give --model and/or --baseline")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise StyleIDError(f"model names must be unique, got {names}; use --name to rename the --model")
    pair_list = read_pairs(pairs)  # bad CSVs fail before any model loads
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / CACHE_FOLDER if cache_dir == "default" else (Path(cache_dir) if cache_dir is not None else None)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    files = list(dict.fromkeys([p.source for p in pair_list] + [p.stylized for p in pair_list]))
    labels = np.array([p.label for p in pair_list])

    scores: dict[str, np.ndarray] = {}
    computed: dict[str, int] = {}
    for spec in specs:
        embeddings, n_new = embed_with_cache(
            files, spec, crop, cache,
            lambda spec=spec: build_embedder(spec, crop, dev, batch_size, detector, model_rootpath),
            batch_size=batch_size, progress=progress,
        )
        scores[spec.name] = pair_scores(pair_list, embeddings)
        computed[spec.name] = n_new

    metrics = {n: _clean(model_metrics(pair_list, s)) for n, s in scores.items()}
    written = {"metrics": out / "metrics.json", "table": out / "table.md"}
    with atomic_write(written["metrics"]) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    with atomic_write(written["table"]) as tmp:
        tmp.write_text(markdown_table(metrics))
    if labels.all() or not labels.any():
        raise StyleIDError(f"{pairs}: ROC curves need both label 0 and label 1 pairs (metrics.json and table.md were written)")
    for key, log_fpr in (("roc", False), ("roc_log", True)):
        written[key] = out / f"{key}.png"
        plot_roc(scores, labels, written[key], log_fpr)
    strength_plot = out / "similarity_vs_strength.png"
    if plot_similarity_vs_strength(pair_list, scores, strength_plot):
        written["similarity_vs_strength"] = strength_plot
    return EvaluationResult(metrics, written, computed)


# ---------------------------------------------------------------------- CLI
def _cmd_eval(args: argparse.Namespace) -> int:
    model = None if str(args.model).lower() == "none" else args.model
    result = evaluate(model, args.pairs, args.out, baselines=args.baseline, crop=args.crop, name=args.name,
                      device=args.device, batch_size=args.batch_size,
                      cache_dir=None if args.no_cache else (args.cache_dir or "default"),
                      detector=args.detector, model_rootpath=args.model_rootpath, progress=not args.quiet)
    print(result.files["table"].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in result.files.values()))
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `styleid eval` to the `styleid` CLI's subparsers."""
    from .faces import DETECTORS

    p = subparsers.add_parser(
        "eval", help="verification metrics, Table-1-style report and ROC plots on a pairs CSV",
        description="Evaluate a StyleID encoder and baselines on source/stylised pairs (StyleBench-H style).",
    )
    p.add_argument("--model", default="kwanY/styleid", help="Hub id or folder of the encoder to evaluate; 'none' for baselines only (default: %(default)s)")
    p.add_argument("--name", default="styleid", help="row name of --model in the outputs (default: %(default)s)")
    p.add_argument("--pairs", required=True, help="CSV with source,stylized,label[,split,method,style,strength,human]; paths relative to it")
    p.add_argument("--out", required=True, help="output folder (metrics.json, table.md, PNG plots, embedding cache)")
    p.add_argument("--baseline", action="append", default=[], metavar="NAME[=MODEL]",
                   help=f"also evaluate {', '.join(BASELINES)}; repeatable; =MODEL overrides the weights (e.g. clip=test-tiny)")
    p.add_argument("--crop", choices=CROPS, default="center", help="center (default: StyleBench images are face-centred portraits), face (detect and crop), none (whole image)")
    p.add_argument("--detector", choices=DETECTORS, default="retinaface", help="face detector for --crop face (default: %(default)s)")
    p.add_argument("--model-rootpath", default=None, help="folder with facexlib weights (RetinaFace, ArcFace)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cache-dir", default=None, help="embedding cache folder (default: OUT/embedding_cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached embeddings")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)
    return p
