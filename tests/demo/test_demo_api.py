"""The demo as `gradio_client` sees it: exactly the three actions, under stable names, with labelled values.

Starts `python -m styleid_guidance.demo --profile tiny` on 127.0.0.1 and calls it as the README shows.
"""
from __future__ import annotations

import os

import pytest
from chromium import ROOT, tiny_demo

FACES = ROOT / "examples" / "faces"


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    with tiny_demo(tmp_path_factory.mktemp("demo_api")) as url:
        yield url


@pytest.fixture(scope="module")
def client(demo_url):
    from gradio_client import Client

    return Client(demo_url, verbose=False)


def test_the_api_lists_the_three_actions_with_labelled_values(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert sorted(api["named_endpoints"]) == ["/jojogan", "/stylize", "/verify"], api["named_endpoints"].keys()
    assert not api["unnamed_endpoints"], api["unnamed_endpoints"]
    for name, endpoint in api["named_endpoints"].items():
        labels = [v["label"] for v in endpoint["parameters"] + endpoint["returns"]]
        assert all(label and not label.startswith("value_") for label in labels), (name, labels)
    verify = api["named_endpoints"]["/verify"]
    assert [p["label"] for p in verify["parameters"]] == ["images (first = reference; videos may follow)", "crop", "faces"]
    assert [r["label"] for r in verify["returns"]] == ["similarity to the reference", "similarity chart", "status"]


def test_verify_through_gradio_client_scores_each_image_against_the_first(client):
    from gradio_client import handle_file

    files = [handle_file(str(FACES / n)) for n in ("astronaut.jpg", "astronaut_sketch.jpg", "astronaut_painted.jpg")]
    table, chart, status = client.predict(files, "center", api_name="/verify")
    from styleid_guidance.demo.weight_sources import IDENTITY_LABELS

    rows, headers = table["data"], table["headers"]
    assert len(rows) == 2 and headers[0] == "image", table  # one row per compared image
    assert ["sketch" in rows[0][0], "painted" in rows[1][0]] == [True, True], rows
    sims = [float(row[headers.index(IDENTITY_LABELS["styleid"])]) for row in rows]
    assert all(-1.0 <= s <= 1.0 for s in sims) and sims[0] != sims[1], (headers, rows)
    assert chart and os.path.isfile(chart) and status
