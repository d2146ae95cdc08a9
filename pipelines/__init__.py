"""Stylisation pipelines (IP-Adapter, InstantID, InfiniteYou, FLUX.1 Kontext) with StyleID identity guidance.

Submodules are imported on demand (`from styleid_guidance.pipelines.ip_adapter import IPAdapterStylizer`): each
pulls in diffusers and its own model code, which a caller of another pipeline should not pay for (loading
InfiniteYou's FLUX pipeline does not load InstantID's SDXL one).

    ip_adapter / instantid / infiniteyou   the three stylizers of the paper and their pipelines
    kontext                                FLUX.1 Kontext [dev] instruction editing (diffusers' own FluxKontextPipeline)
    face_embeddings                        the face-recognition embeddings the adapters are conditioned on
    resampler                              the identity Resampler (official key layout ↔ diffusers)
    keypoints                              the 5-keypoint control image
    adapter_files                          reading the official adapter files; loader errors in one line
    quantize                               int8 weights for the FLUX pipelines (optimum-quanto)
    ddim                                   the paper's DDIM set-up
    presets                                the paper's seven strength levels and style prompts (Kontext: as instructions)

The tiny random stand-ins live in `styleid_guidance.tiny` and are reached through each stylizer's `.tiny()`.
"""
