"""The model card `styleid push` uploads: huggingface_hub `ModelCard` / `ModelCardData`, with a `model-index`
whose results come from a `styleid eval` folder (metrics.json), per split, so the Hub shows them."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import StyleIDError

TASK = ("face-verification", "Face verification across styles")
# metrics.json key → (model-index metric type, display name)
CARD_METRICS = {"auroc": ("roc_auc", "AUROC"), "tpr@1e-2": ("tpr_at_fpr_1e-2", "TPR@FPR=1e-2"),
                "tpr@1e-3": ("tpr_at_fpr_1e-3", "TPR@FPR=1e-3"), "acc@0.3": ("accuracy_at_0.3", "Accuracy@0.3"),
                "acc@0.4": ("accuracy_at_0.4", "Accuracy@0.4"), "acc@0.5": ("accuracy_at_0.5", "Accuracy@0.5")}
HUMAN_METRIC = ("spearman", "Spearman ρ with people")

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A StyleID encoder: a style-robust face identity embedding (CLIP ViT + LoRA) that scores whether a stylised
portrait keeps the person's identity. Embeddings are L2-normalised; compare them by cosine similarity.

## Usage

```bash
pip install styleid-guidance
styleid score photo.png stylized/ --model {{ repo_id }}
```

```python
{{ usage }}
```

{{ eval_section }}

Uploaded with `styleid push`{{ format_note }}.
"""

USAGE = {
    "styleid": """from styleid_guidance import StyleIDEncoder

encoder = StyleIDEncoder.from_pretrained("{repo_id}").eval()
z = encoder.embed(["photo.png", "stylized.png"])
print(float(z[0] @ z[1]))  # cosine similarity""",
    "transformers": """from transformers import CLIPVisionModelWithProjection, CLIPImageProcessor
from PIL import Image

model = CLIPVisionModelWithProjection.from_pretrained("{repo_id}").eval()
processor = CLIPImageProcessor.from_pretrained("{repo_id}")
z = model(**processor(images=[Image.open("photo.png"), Image.open("stylized.png")], return_tensors="pt")).image_embeds
z = z / z.norm(dim=-1, keepdim=True)
print(float(z[0] @ z[1]))  # cosine similarity""",
}


def read_eval(eval_dir: str | Path, name: str | None = None) -> tuple[str, dict[str, Any]]:
    """(model name, its metrics) from an eval folder's metrics.json."""
    path = Path(eval_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StyleIDError(f"{eval_dir}: no readable metrics.json ({type(err).__name__}); give a folder written by styleid eval") from None
    if not isinstance(metrics, dict) or not metrics:
        raise StyleIDError(f"{path}: not the metrics.json of styleid eval")
    if name is None:
        name = "styleid" if "styleid" in metrics else (next(iter(metrics)) if len(metrics) == 1 else None)
    if name not in metrics or not isinstance(metrics[name], dict) or "overall" not in metrics[name]:
        raise StyleIDError(f"{path}: no results for model {name!r} (it has {', '.join(map(str, metrics))})")
    return name, metrics[name]


def eval_results(model_metrics: dict[str, Any], dataset: str) -> list[Any]:
    """model-index entries: every reported metric overall and per split (None/NaN values are left out)."""
    from huggingface_hub import EvalResult

    groups = [("all", model_metrics["overall"], model_metrics.get("human"))]
    groups += [(split, r, r.get("human")) for split, r in (model_metrics.get("split") or {}).items()]
    out = []
    for split, report, human in groups:
        items = [(CARD_METRICS[k], report.get(k)) for k in CARD_METRICS]
        if isinstance(human, dict):
            items.append((HUMAN_METRIC, human.get("spearman")))
        for (metric_type, metric_name), value in items:
            if isinstance(value, (int, float)) and math.isfinite(value):
                out.append(EvalResult(task_type=TASK[0], task_name=TASK[1], dataset_type=dataset, dataset_name=dataset,
                                      dataset_split=split, metric_type=metric_type, metric_name=metric_name,
                                      metric_value=float(value)))
    return out


def build_card(repo_id: str, *, fmt: str, base_model: str | None, license: str, eval_metrics: dict[str, Any] | None,
               dataset: str = "stylebench-h") -> Any:
    from huggingface_hub import ModelCard, ModelCardData

    results = eval_results(eval_metrics, dataset) if eval_metrics else None
    data = ModelCardData(
        library_name="transformers" if fmt == "transformers" else "styleid-guidance", base_model=base_model, license=license,
        tags=["styleid", "face-recognition", "identity-preservation", "clip", "lora"], pipeline_tag="image-feature-extraction",
        model_name=repo_id.split("/")[-1], eval_results=results)
    if eval_metrics:
        rows = "\n".join(f"| {r.dataset_split} | {r.metric_name} | {r.metric_value:.4f} |" for r in results or [])
        section = f"## Evaluation ({dataset})\n\n| Split | Metric | Value |\n|---|---|---|\n{rows}\n"
    else:
        section = "## Evaluation\n\nNot evaluated yet: `styleid eval --model MODEL --pairs pairs.csv -o DIR`, then `styleid push --eval DIR`."
    return ModelCard.from_template(data, template_str=TEMPLATE, model_name=repo_id.split("/")[-1], repo_id=repo_id,
                                   usage=USAGE[fmt].format(repo_id=repo_id), eval_section=section,
                                   format_note=" (transformers `CLIPVisionModelWithProjection`, LoRA merged)" if fmt == "transformers" else "")
