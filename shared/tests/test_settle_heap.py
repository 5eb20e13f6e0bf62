"""`settle_heap`, run once a service has started: start-up's objects are set aside from
Python's garbage collector and the youngest generation is collected less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from lintas_shared import runtime
from lintas_shared.runtime import settle_heap
from lintas_shared.settings import CommonSettings

pytestmark = pytest.mark.unit


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process whose heap was not settled yet; its collector put back afterwards."""
    monkeypatch.setattr(runtime, "_HEAP_SETTLED", False)
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
def test_start_ups_objects_are_set_aside_and_young_collections_come_less_often() -> None:
    _, middle, oldest = gc.get_threshold()
    made_at_start_up = [{"n": i} for i in range(1_000)]
    settle_heap(10_000)
    assert gc.get_threshold() == (10_000, middle, oldest)
    assert gc.get_freeze_count() >= len(made_at_start_up)
    watched = {id(o) for generation in range(3) for o in gc.get_objects(generation=generation)}
    assert not {id(d) for d in made_at_start_up} & watched  # no collection walks them


@pytest.mark.usefixtures("collector")
def test_only_the_first_start_of_a_process_sets_anything_aside() -> None:
    settle_heap(10_000)
    frozen = gc.get_freeze_count()
    made_by_a_later_app = [{"n": i} for i in range(1_000)]
    settle_heap(20_000)
    assert gc.get_freeze_count() == frozen
    assert gc.get_threshold()[0] == 10_000
    assert made_by_a_later_app  # still held here: not what kept the count


def test_the_setting_defaults_to_ten_thousand_and_zero_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert CommonSettings().gc_young_threshold == 10_000
    monkeypatch.setenv("LINTAS_GC_YOUNG_THRESHOLD", "0")
    assert CommonSettings().gc_young_threshold == 0
