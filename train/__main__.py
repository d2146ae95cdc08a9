"""`python -m styleid_guidance.train ...` = `styleid train ...` (also under `accelerate launch -m`)."""
import sys

from styleid_guidance.cli import run

raise SystemExit(run(["train", *sys.argv[1:]]))
