"""open_clip's "initialized randomly" warning is dropped while we build a tower we load weights into, whichever
logger open_clip uses (root, "open_clip", or a module logger such as "open_clip.factory"); nothing else is."""
from __future__ import annotations

import logging

import pytest

from styleid_guidance.encoder.backbones import _no_random_init_warning

MESSAGE = "No pretrained weights loaded for model 'x'. Model initialized randomly."


@pytest.mark.parametrize("logger_name", [None, "open_clip", "open_clip.factory", "open_clip.model"])
def test_random_init_warning_is_filtered_on_every_open_clip_logger(caplog, logger_name):
    logger = logging.getLogger(logger_name)  # created before the context, as open_clip's module loggers are
    caplog.set_level(logging.WARNING)
    with _no_random_init_warning():
        logger.warning(MESSAGE)
        logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
    logger.warning(MESSAGE)  # outside the context: nothing is filtered any more
    assert caplog.records[-1].getMessage() == MESSAGE
    assert not any(f for lg in (logging.getLogger(), logging.getLogger("open_clip"), logger) for f in lg.filters)


def test_building_the_tiny_tower_logs_no_random_init_warning(caplog):
    from styleid_guidance.encoder.model import StyleIDEncoder

    caplog.set_level(logging.INFO)
    StyleIDEncoder.from_open_clip("test-tiny", pretrained=None)
    assert not any("initialized randomly" in r.getMessage() for r in caplog.records)
