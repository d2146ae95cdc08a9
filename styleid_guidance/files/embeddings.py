"""Embedding files written by `styleid embed`, and reading them back with their image names.

* `NAME.safetensors`: tensor "embeddings" [N, D]; metadata "files" (JSON list of N names) and "model".
* `NAME.npy` + `NAME.files.txt`: the array, and one name per row after a header line
  `# sha256=<hex of NAME.npy> rows=N model=...`. The two files cannot be replaced in one step, so the
  header ties them: a reader that finds a different hash knows a run was interrupted between them.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import StyleIDError
from .atomic import atomic_write

HEADER = "# sha256="


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_embeddings(path: str | Path, embeddings: torch.Tensor, names: list[str], model: str = "") -> Path:
    path = Path(path)
    if len(names) != len(embeddings):
        raise StyleIDError(f"{len(names)} names for {len(embeddings)} embeddings")
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        with atomic_write(path) as tmp:
            save_file({"embeddings": embeddings.float().contiguous()}, str(tmp),
                      metadata={"files": json.dumps(names), "model": model})
        return path
    if path.suffix != ".npy":
        raise StyleIDError(f"{path}: use a .npy or .safetensors file name")
    data = _npy_bytes(embeddings.float().numpy())
    digest = hashlib.sha256(data).hexdigest()
    sidecar = path.with_suffix(".files.txt")
    # names first: an interrupted run leaves a new sidecar whose hash does not match the old array
    with atomic_write(sidecar) as tmp:
        tmp.write_text(f"{HEADER}{digest} rows={len(names)} model={model}\n" + "".join(n + "\n" for n in names))
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return path


def read_embeddings(path: str | Path) -> tuple[torch.Tensor, list[str]]:
    """(embeddings [N, D], names) from either format; mismatched or damaged files are one-line errors."""
    emb, names, _ = read_embeddings_and_model(path)
    return emb, names


def read_embeddings_and_model(path: str | Path) -> tuple[torch.Tensor, list[str], str]:
    """(embeddings, names, the model id `styleid embed` recorded, "" if none) in one read of the file."""
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                emb = f.get_tensor("embeddings")
            names = json.loads(meta.get("files", "[]"))
            model = meta.get("model", "")
        except Exception as err:  # safetensors / JSON raise several types; all mean a damaged file
            raise StyleIDError(f"{path}: not an embeddings file written by styleid embed ({type(err).__name__})") from None
    elif path.suffix == ".npy":
        sidecar = path.with_suffix(".files.txt")
        data = path.read_bytes()
        try:
            lines = sidecar.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            raise StyleIDError(f"{sidecar}: missing or unreadable; the names of {path.name}'s rows are in it") from None
        if not lines or not lines[0].startswith(HEADER):
            raise StyleIDError(f"{sidecar}: no '{HEADER}...' header line; was it written by styleid embed?")
        recorded = (lines[0][len(HEADER):].split() or [""])[0]
        if recorded != hashlib.sha256(data).hexdigest():
            raise StyleIDError(f"{path} and {sidecar.name} are from different runs (an interrupted write?); embed again")
        names = lines[1:]
        model = lines[0].partition(" model=")[2].strip()  # the header's last field: a model path may contain spaces
        try:
            emb = torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False))
        except ValueError as err:
            raise StyleIDError(f"{path}: not a readable .npy file ({err})") from None
    else:
        raise StyleIDError(f"{path}: not a .npy or .safetensors embeddings file")
    if len(names) != len(emb):
        raise StyleIDError(f"{path}: {len(emb)} embeddings but {len(names)} names")
    return emb, names, model
