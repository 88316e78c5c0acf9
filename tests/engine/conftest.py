"""Fixtures for the engine tests (the fakes themselves live in ``fakes.py``)."""

from __future__ import annotations

import pytest

from agents.engine import BreakerRegistry

from .fakes import FakeFactory, Recorder, SleepRecorder


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
def events() -> Recorder:
    return Recorder()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def breakers() -> BreakerRegistry:
    return BreakerRegistry()
