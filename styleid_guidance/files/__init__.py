"""File formats and safe file handling: atomic writes that respect the umask (`atomic`), weights-only
loading (`safeload`), embedding files of `styleid embed` (`embeddings`), images in any mode (`images`), sampled video frames (`video`, PyAV)."""
