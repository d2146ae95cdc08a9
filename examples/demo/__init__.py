"""The Gradio side-by-side demo: Verify, Stylize and JoJoGAN tabs on StyleID vs ArcFace vs CLIP.

Start it with `styleid demo` (see `styleid demo --help`); `python -m styleid_guidance.demo` works too.
"""
