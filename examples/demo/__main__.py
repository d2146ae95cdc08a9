"""`python -m styleid_guidance.demo ...` = `styleid demo ...`."""
import sys

from styleid_guidance.cli import run

raise SystemExit(run(["demo", *sys.argv[1:]]))
