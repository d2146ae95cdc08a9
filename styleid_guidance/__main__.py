"""`python -m styleid_guidance COMMAND ...` (and `accelerate launch -m styleid_guidance train ...`)."""
from .cli import main

main()
