"""`styleid demo`: the Gradio side-by-side demo.

    styleid demo                      # real models when they can be had, else the offline tiny profile
    styleid demo --profile tiny       # built-in tiny random models: the whole UI offline, outputs not meaningful
    styleid demo --profile sdxl --weights instantid.base_model=/models/YamerMIX_v8
    styleid demo --share              # a public gradio.live link (or --host 0.0.0.0 for your network)

Serves on 127.0.0.1 only unless told otherwise.
"""
from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from styleid_guidance.cli import flags, parsing, runtime, values
from styleid_guidance.errors import StyleIDError

from .weight_sources import PROFILES


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="the Gradio demo (Verify / Stylize / JoJoGAN) on 127.0.0.1", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=PROFILES, default="auto",
                   help="models: tiny (offline, random, not meaningful), sd15 (IP-Adapter), sdxl (+ InstantID), "
                        "flux (+ InfiniteYou, FLUX.1 Kontext); auto = sd15 when its weights can be had, else tiny (default)")
    flags.add_model(p, default=None)
    flags.add_arcface_model(p)
    p.add_argument("--weights", action="append", default=[], metavar="KEY=VALUE",
                   help="a Hub id or local path for one other component, e.g. jojogan.stylegan_ckpt=PATH, "
                        "ip_adapter.base_model=ID, clip=ViT-B-16/openai (repeatable)")
    flags.add_device(p)
    flags.add_precision(p, "auto")  # interactive: bf16 where the hardware runs it natively
    flags.add_faces(p, crop=False)
    g = p.add_argument_group("serving")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    g.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    g.add_argument("--concurrency", type=int, default=1, help="requests that run models at the same time (default 1)")
    g.add_argument("--queue-size", type=int, default=16, help="requests that may wait in the queue (default 16)")
    g.add_argument("--max-upload-mb", type=values.finite_float, default=10.0, help="largest upload in MB (default 10)")
    g.add_argument("--max-side", type=int, default=4096, help="largest image side in pixels (default 4096)")
    g.add_argument("--open-browser", action="store_true", help="open the page in a browser once it is up")
    p.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    if args.port is not None and not 0 < args.port < 65536:
        raise StyleIDError(f"--port must be from 1 to 65535, got {args.port}")
    for flag, value in (("--concurrency", args.concurrency), ("--queue-size", args.queue_size), ("--max-side", args.max_side)):
        if value < 1:
            raise StyleIDError(f"--{flag.lstrip('-')} must be ≥ 1, got {value}")
    if not args.max_upload_mb > 0:
        raise StyleIDError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def weights_from(args: argparse.Namespace) -> dict[str, str]:
    """--weights KEY=VALUE plus --model / --arcface-model, as the Models registry's weight table."""
    from .weight_sources import parse_weight_overrides

    with parsing.for_option("--weights"):
        weights = parse_weight_overrides(args.weights)
    for key, flag in (("styleid", "--model"), ("arcface", "--arcface-model")):
        if key in weights:
            raise StyleIDError(f"--weights {key}=...: use {flag} for the {key} weights")
    if args.model:
        weights["styleid"] = args.model
    if args.arcface_model:
        weights["arcface"] = args.arcface_model
    return weights


def run(args: argparse.Namespace) -> int:
    check_args(args)
    log = runtime.command_logger("demo")

    from .limits import Limits
    from .profiles import Models
    from .weight_sources import go_offline, hub_reachable, resolve_profile

    device = runtime.device_from(args)  # `--device cuda` without a GPU: refused here, not on every click
    weights = weights_from(args)
    profile, note = resolve_profile(args.profile, weights)
    if note:
        log.warning(note)
    if profile != "tiny" and not hub_reachable()[0]:
        go_offline()  # read the local cache only: no download attempt may hang a click
    models = Models(profile, device=str(device), weights=weights, detector=args.detector, model_rootpath=args.model_rootpath)
    models.precision = args.precision  # read by Models.identity_loss
    limits = Limits(max_upload_mb=args.max_upload_mb, max_side=args.max_side)
    if profile == "tiny":
        log.warning("tiny profile: built-in tiny random models, the outputs are NOT meaningful")
    log.info("profile %s on %s", profile, models.device)
    if profile != "tiny":
        from .status import summarize

        summary = summarize(models)
        for label, why in summary.unavailable.items():
            log.warning("%s unavailable: %s", label, why)
        for note in models.notes:
            log.warning(note)
        log.info("; ".join(f"{tab} {what}" for tab, what in summary.tabs.items()))
    if not is_loopback(args.host):
        log.warning("serving on %s: anyone who can reach this machine can use the demo", args.host)

    from .app import CSS, FACES_DIR, build_app

    demo = build_app(models, limits, fallback_note=note, concurrency=args.concurrency)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, inbrowser=args.open_browser,
                max_file_size=limits.max_file_size, ssr_mode=False, css=CSS, allowed_paths=[str(FACES_DIR)],
                # only gr.Error sentences reach the browser; anything else is "Error" there and logged here
                show_error=False)
    return 0
