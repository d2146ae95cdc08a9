"""int8 weights for the FLUX pipelines (InfiniteYou, FLUX.1 Kontext): optimum-quanto on the big models only."""
from __future__ import annotations

from typing import Any

from styleid_guidance.errors import StyleIDError


def quantize_flux_8bit(pipe: Any) -> None:
    """int8 weights (optimum-quanto) on the transformer, the ControlNet where there is one (InfuseNet) and T5, as
    upstream InfiniteYou's `--quantize_8bit` (about 20 GB less for FLUX.1-dev, quality very close). In place."""
    try:
        from optimum.quanto import freeze, qint8, quantize
    except ImportError:
        raise StyleIDError("quantize_8bit needs optimum-quanto: pip install optimum-quanto") from None
    for model in (pipe.transformer, getattr(pipe, "controlnet", None), pipe.text_encoder_2):
        if model is not None:
            quantize(model, weights=qint8)
            freeze(model)
