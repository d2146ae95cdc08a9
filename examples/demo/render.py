"""Pictures the tabs return: the similarity bar chart and labelled image grids."""
from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from .weight_sources import IDENTITY_LABELS

MODEL_COLORS = {"styleid": "#d9480f", "arcface": "#1c7ed6", "clip": "#868e96"}


def similarity_chart(names: Sequence[str], similarity: dict[str, list[float]], thresholds: dict[str, float]) -> Image.Image:
    """Grouped bars: one group per compared image, one bar per model, dashed lines at each model's threshold."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt

    models = list(similarity)
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(names) + 2.5), 3.6), dpi=100)
    try:
        for k, model in enumerate(models):
            xs = [i + (k - (len(models) - 1) / 2) * width for i in range(len(names))]
            bars = ax.bar(xs, similarity[model], width, label=IDENTITY_LABELS[model], color=MODEL_COLORS[model])
            ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
            ax.axhline(thresholds[model], color=MODEL_COLORS[model], linestyle="--", linewidth=1, alpha=0.8)
        ax.set_xticks(range(len(names)), [textwrap.shorten(n, 22, placeholder="…") for n in names], fontsize=9)
        ax.set_ylabel("cosine similarity to the reference")
        ax.set_ylim(min(-0.1, *(min(v) - 0.1 for v in similarity.values())) if similarity else -0.1, 1.05)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.legend(title="dashed: same/different\nthreshold", fontsize=8, title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


@dataclass
class Cell:
    image: Image.Image | None  # None: nothing to show, `caption` says why
    caption: str


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def image_grid(cells: Sequence[Sequence[Cell]], row_labels: Sequence[str], col_labels: Sequence[str], cell: int = 256) -> Image.Image:
    """A labelled grid: header row, a label column, every image with its caption underneath."""
    head, label_w, cap_h, pad = 52, 150, 40, 8  # head: room for Gradio's floating label
    rows, cols = len(cells), len(col_labels)
    grid = Image.new("RGB", (label_w + cols * (cell + pad) + pad, head + rows * (cell + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    big, small = _font(18), _font(14)
    for c, text in enumerate(col_labels):
        x = label_w + c * (cell + pad) + pad
        draw.text((x + cell / 2, head - 14), text, fill="black", font=big, anchor="mm")
    for r, text in enumerate(row_labels):
        y = head + r * (cell + cap_h + pad) + pad
        draw.multiline_text((pad, y + cell / 2), "\n".join(textwrap.wrap(text, 16)), fill="black", font=big, anchor="lm")
        for c in range(cols):
            x = label_w + c * (cell + pad) + pad
            item = cells[r][c]
            if item.image is not None:
                grid.paste(item.image.convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS), (x, y))
                draw.text((x + cell / 2, y + cell + cap_h / 2), item.caption, fill="black", font=small, anchor="mm")
            else:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill="#f1f3f5", outline="#ced4da")
                draw.multiline_text((x + 10, y + 10), "\n".join(textwrap.wrap(item.caption, 30)[:12]), fill="#495057", font=small)
    return grid
