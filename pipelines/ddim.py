"""The samplers the paper's generations use, which identity guidance can follow exactly (see
`styleid_guidance.integrations.x0_estimate`): DDIM, eta 0, no clipping."""
from __future__ import annotations

from typing import Any

from diffusers import DDIMScheduler


def sd15_scheduler() -> DDIMScheduler:
    """DDIM as in the paper's IP-Adapter generations (SD1.5 betas, no clipping, eta 0)."""
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def ddim_like(scheduler: Any) -> DDIMScheduler:
    """DDIM with another scheduler's betas (e.g. an SDXL checkpoint's), set up as `sd15_scheduler`."""
    return DDIMScheduler.from_config(scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
