"""`python -m train` (also what `accelerate launch -m train` runs)."""
from .cli import main

raise SystemExit(main())
