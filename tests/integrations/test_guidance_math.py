"""x0 recovery and the x0 → latents step map, per scheduler, against the schedulers' own arithmetic."""
from __future__ import annotations

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    PNDMScheduler,
)

from styleid_guidance.integrations import SUPPORTED_SCHEDULERS, check_scheduler, recover_x0, unpack_flux_latents, x0_from_xt
from styleid_guidance.errors import StyleIDError

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def _scheduler(cls):
    if cls is FlowMatchEulerDiscreteScheduler:
        return cls(shift=3.0)
    if cls is DDIMScheduler:
        return cls(clip_sample=False, set_alpha_to_one=False, steps_offset=1, **SD_BETAS)
    return cls(**SD_BETAS)


def _walk(cls, steps: int = 8, shape=(2, 4, 8, 8)):
    """Run a scheduler on random model outputs; yield (scheduler, t, x_t, model_output, step output) per step."""
    gen = torch.Generator().manual_seed(0)
    sched = _scheduler(cls)
    sched.set_timesteps(steps)
    x = torch.randn(*shape, generator=gen) * float(getattr(sched, "init_noise_sigma", 1.0))
    for t in sched.timesteps:
        model_output = torch.randn(*shape, generator=gen)
        out = sched.step(model_output, t, x)
        yield sched, t, x, model_output, out
        x = out.prev_sample


@pytest.mark.parametrize("cls", [DDIMScheduler, EulerDiscreteScheduler])
def test_x0_from_latents_matches_pred_original_sample(cls):
    n = 0
    for sched, t, x_t, eps, out in _walk(cls):
        x0, _ = recover_x0(sched, out.prev_sample, eps, t)
        torch.testing.assert_close(x0, out.pred_original_sample.float(), atol=1e-4, rtol=0)
        torch.testing.assert_close(x0_from_xt(sched, x_t, eps, t), out.pred_original_sample.float(), atol=1e-4, rtol=0)
        n += 1
    assert n == 8


def test_x0_dpm_solver_pp_is_its_data_prediction():
    for sched, t, x_t, eps, out in _walk(DPMSolverMultistepScheduler):
        x0, factor = recover_x0(sched, out.prev_sample, eps, t)
        alpha_t, sigma_t = sched._sigma_to_alpha_sigma_t(sched.sigmas[sched.step_index - 1])
        # the solver's stored data prediction is (x_t − σ_t ε)/α_t, which the x_t mode recomputes differentiably
        torch.testing.assert_close(x0, (x_t - sigma_t * eps) / alpha_t, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(x0_from_xt(sched, x_t, eps, t), x0, atol=1e-4, rtol=1e-5)
        assert 0 < factor <= 1


def test_x0_flow_match_from_packed_velocity():
    for sched, t, x_t, v, out in _walk(FlowMatchEulerDiscreteScheduler, shape=(2, 16, 64)):  # FLUX-packed shape
        x0, factor = recover_x0(sched, out.prev_sample, v, t)
        sigma = sched.sigmas[sched.step_index - 1]
        torch.testing.assert_close(x0, x_t - sigma * v, atol=1e-4, rtol=0)
        assert factor == pytest.approx(1 - float(sched.sigmas[sched.step_index]))


@pytest.mark.parametrize("cls", [DDIMScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler])
def test_guided_latents_decode_to_guided_x0(cls):
    """latents + c·Δ is the state the scheduler would have reached had it predicted x0 + Δ with the same noise."""
    delta = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for sched, t, x_t, out_model, out in _walk(cls, steps=5):
        x0, c = recover_x0(sched, out.prev_sample, out_model, t)
        # the noise estimate stays fixed: ε for DDIM/Euler; for flow matching v = noise − x0 shifts by −Δ
        same_noise = out_model - delta if cls is FlowMatchEulerDiscreteScheduler else out_model
        x0_new, _ = recover_x0(sched, out.prev_sample + c * delta, same_noise, t)
        torch.testing.assert_close(x0_new, x0 + delta, atol=1e-4, rtol=0)


def test_unpack_flux_latents_matches_diffusers():
    from diffusers import FluxPipeline

    z = torch.randn(2, 16, 8, 12)
    packed = FluxPipeline._pack_latents(z, 2, 16, 8, 12)
    torch.testing.assert_close(unpack_flux_latents(packed, (4, 6)), z)
    # diffusers' own unpack (pixel height/width with vae_scale_factor 8) agrees
    torch.testing.assert_close(FluxPipeline._unpack_latents(packed, 64, 96, 8), z)
    with pytest.raises(StyleIDError, match="tokens"):
        unpack_flux_latents(packed, (5, 5))


@pytest.mark.parametrize("cls", [PNDMScheduler, EulerAncestralDiscreteScheduler])
def test_unsupported_scheduler_names_the_supported_ones(cls):
    with pytest.raises(StyleIDError) as err:
        check_scheduler(cls(**SD_BETAS))
    assert cls.__name__ in str(err.value)
    assert all(name in str(err.value) for name in SUPPORTED_SCHEDULERS)


def test_scheduler_settings_that_break_exact_recovery_are_refused():
    with pytest.raises(StyleIDError, match="clip_sample"):
        check_scheduler(DDIMScheduler(clip_sample=True))
    with pytest.raises(StyleIDError, match="epsilon"):
        check_scheduler(EulerDiscreteScheduler(prediction_type="v_prediction"))
    with pytest.raises(StyleIDError, match="stochastic"):
        check_scheduler(FlowMatchEulerDiscreteScheduler(stochastic_sampling=True))
