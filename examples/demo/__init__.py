"""`styleid-demo`: the Gradio side-by-side demo (also `python -m styleid_guidance.demo`).

    styleid-demo                    # real models when they can be had, else the offline tiny profile
    styleid-demo --profile tiny     # built-in tiny random models: the whole UI offline, outputs not meaningful
    styleid-demo --profile sdxl --model instantid.base_model=/models/YamerMIX_v8
    styleid-demo --share            # a public gradio.live link (or --host 0.0.0.0 for your network)

Serves on 127.0.0.1 only unless told otherwise.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from typing import Sequence

from styleid_guidance.errors import StyleIDError, run_cli

from .profiles import PROFILES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="styleid-demo", description="StyleID side-by-side demo (Gradio).")
    p.add_argument("--profile", choices=PROFILES, default="auto",
                   help="models: tiny (offline, random, not meaningful), sd15 (IP-Adapter), sdxl (+ InstantID), "
                        "flux (+ InfiniteYou); auto = sd15 when its weights can be had, else tiny (default)")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="a Hub id or local path for one component, e.g. styleid=/models/styleid, "
                        "jojogan.stylegan_ckpt=PATH, ip_adapter.base_model=ID (repeatable)")
    p.add_argument("--device", default=None, help="cpu / cuda / cuda:1 (default: cuda when available)")
    p.add_argument("--detector", choices=("retinaface", "mtcnn"), default=None,
                   help="face detector (default: retinaface; mtcnn in the tiny profile)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    p.add_argument("--concurrency", type=int, default=1, help="requests that run models at the same time (default 1)")
    p.add_argument("--queue-size", type=int, default=16, help="requests that may wait in the queue (default 16)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload in MB (default 10)")
    p.add_argument("--max-side", type=int, default=4096, help="largest image side in pixels (default 4096)")
    p.add_argument("--open-browser", action="store_true", help="open the page in a browser once it is up")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.port is not None and not 0 < args.port < 65536:
        raise StyleIDError(f"--port must be from 1 to 65535, got {args.port}")
    for flag, value in (("--concurrency", args.concurrency), ("--queue-size", args.queue_size), ("--max-side", args.max_side)):
        if value < 1:
            raise StyleIDError(f"{flag} must be >= 1, got {value}")
    if not args.max_upload_mb > 0:
        raise StyleIDError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_args(args)
    log = logging.getLogger("styleid-demo")
    if not log.handlers:  # our own lines only; the root logger stays as the libraries left it
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("styleid-demo: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    from .limits import Limits
    from .profiles import Models, go_offline, hub_reachable, parse_weight_overrides, resolve_profile

    weights = parse_weight_overrides(args.model)
    profile, note = resolve_profile(args.profile, weights)
    if note:
        log.warning(note)
    if profile != "tiny" and not hub_reachable()[0]:
        go_offline()  # read the local cache only: no download attempt may hang a click
    models = Models(profile, device=args.device, weights=weights, detector=args.detector)
    limits = Limits(max_upload_mb=args.max_upload_mb, max_side=args.max_side)
    if profile == "tiny":
        log.warning("tiny profile: built-in tiny random models, the outputs are NOT meaningful")
    log.info("profile %s on %s", profile, models.device)
    if not is_loopback(args.host):
        log.warning("serving on %s: anyone who can reach this machine can use the demo", args.host)

    from .app import CSS, build_app

    demo = build_app(models, limits, fallback_note=note, concurrency=args.concurrency)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, inbrowser=args.open_browser,
                max_file_size=limits.max_file_size, show_error=True, ssr_mode=False, css=CSS)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, prog="styleid-demo")


if __name__ == "__main__":
    sys.exit(main())
