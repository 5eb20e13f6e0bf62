"""Stopping the bench's servers is not cut short by a second signal."""

from __future__ import annotations

import os
import signal

import pytest
from lintas_bench.stack import signals_held

pytestmark = pytest.mark.unit


def test_a_signal_while_everything_stops_is_ignored_and_handling_comes_back_after() -> None:
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)  # would raise KeyboardInterrupt here
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
