"""One place where a pipeline's `identity_guidance=` argument becomes `callback_on_step_end` call kwargs,
composed with the user's own step-end callback through diffusers' `MultiPipelineCallbacks`."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from styleid_guidance.errors import StyleIDError

from .callback import IdentityGuidanceCallback


class _FunctionCallback(PipelineCallback):
    """Gives a plain `fn(pipe, step, t, kwargs)` callback the `tensor_inputs` MultiPipelineCallbacks needs."""

    def __init__(self, fn: Callable, tensor_inputs: Sequence[str]):
        self.fn = fn
        self._tensor_inputs = list(tensor_inputs)

    @property
    def tensor_inputs(self) -> list[str]:
        return self._tensor_inputs

    def callback_fn(self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        return self.fn(pipeline, step_index, timestep, callback_kwargs)


def prepare_guidance_kwargs(
    pipe: Any,
    identity_guidance: IdentityGuidanceCallback | None,
    callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
    callback_on_step_end_tensor_inputs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The pipeline call kwargs that install `identity_guidance` next to the user's own step-end callback.

    Guidance runs first, so the user's callback sees the guided latents. Without guidance the user's
    arguments pass through unchanged (and nothing is returned for those left None)."""
    kwargs: dict[str, Any] = {}
    if identity_guidance is None:
        if callback_on_step_end is not None:
            kwargs["callback_on_step_end"] = callback_on_step_end
        if callback_on_step_end_tensor_inputs is not None:
            kwargs["callback_on_step_end_tensor_inputs"] = list(callback_on_step_end_tensor_inputs)
        return kwargs
    if not isinstance(identity_guidance, IdentityGuidanceCallback):
        raise StyleIDError(f"identity_guidance must be an IdentityGuidanceCallback or None, got {type(identity_guidance).__name__}")
    identity_guidance.attach(pipe)
    if callback_on_step_end is None:
        return {"callback_on_step_end": identity_guidance, "callback_on_step_end_tensor_inputs": list(identity_guidance.tensor_inputs)}
    user = callback_on_step_end
    if not isinstance(user, (PipelineCallback, MultiPipelineCallbacks)):
        user = _FunctionCallback(user, callback_on_step_end_tensor_inputs or ["latents"])
    elif callback_on_step_end_tensor_inputs is not None:
        user = _FunctionCallback(user, callback_on_step_end_tensor_inputs)
    combined = MultiPipelineCallbacks([identity_guidance, user])
    names = list(dict.fromkeys(combined.tensor_inputs))
    return {"callback_on_step_end": combined, "callback_on_step_end_tensor_inputs": names}
