"""The readers `styleid score` feeds user files to: any input is a result or one StyleIDError, never a crash."""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from styleid_guidance.errors import StyleIDError
from styleid_guidance.score.pairing import read_pairs_csv
from styleid_guidance.score.sources import read_source

CSV_ALPHABET = st.sampled_from(list('abc,."\n\r\t ') + ["reference", "generated", "source", "stylized", "é", "\x00"])


@settings(max_examples=200, deadline=None)
@given(st.lists(CSV_ALPHABET, max_size=40).map("".join))
def test_pairs_csv_reader_never_crashes(text):
    try:
        rows = read_pairs_csv(text, "p.csv")
    except StyleIDError as err:
        assert str(err).startswith("p.csv") and "\n" not in str(err)
    else:
        assert rows and all(a and b and a == a.strip() for a, b in rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.sampled_from([".safetensors", ".npy"]), st.binary(max_size=120))
def test_embeddings_reader_never_crashes(data, suffix, sidecar):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"e{suffix}"
        path.write_bytes(data)
        if suffix == ".npy":
            path.with_suffix(".files.txt").write_bytes(sidecar)
        try:
            src = read_source(path)
        except StyleIDError as err:
            assert "\n" not in str(err).strip()
        else:
            assert src.kind == "embeddings" and len(src.names) == len(src.embeddings)


def test_a_valid_npy_header_with_model_round_trips(tmp_path):
    import torch

    from styleid_guidance.files.embeddings import write_embeddings

    write_embeddings(tmp_path / "e.npy", torch.nn.functional.normalize(torch.randn(2, 4), dim=-1), ["a b.png", "c.png"],
                     model="/models/my model")
    src = read_source(tmp_path / "e.npy")
    assert src.names == ["a b.png", "c.png"] and src.model == "/models/my model"
