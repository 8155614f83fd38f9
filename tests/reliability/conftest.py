"""Shared pieces of the reliability suite: budgets, the figures the tests record, a real daemon in a subprocess.

Budgets scale with $INFILL_RELIABILITY_SCALE (default 1: the normal `pytest -q` run, about a minute and a half
on 2 cores); `benchmarks/reliability.py` runs the same tests with a larger scale. Every test records what it
tried and what happened in `figures` (printed at the end of the run, and written as JSON to
$INFILL_RELIABILITY_FIGURES when that is set).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import DaemonProcess
from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("INFILL_RELIABILITY_SCALE", "1"))
FIGURES_ENV = "INFILL_RELIABILITY_FIGURES"


def budget(n: int) -> int:
    """`n` at scale 1, scaled for the benchmark."""
    return max(1, round(n * SCALE))


def examples(n: int) -> settings:
    """Hypothesis settings for `n` examples (scaled): no deadline (a loaded machine is slow, not wrong), the same
    examples on every run (CI stability), no example database."""
    return settings(max_examples=budget(n), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


class Figures:
    """Counts and values by section: figures.count("fuzz", "wrong_type"); figures.set("load", "p95_ms", 12.5)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = defaultdict(dict)

    def count(self, section: str, key: str, n: int = 1) -> None:
        self.data[section][key] = self.data[section].get(key, 0) + n

    def set(self, section: str, key: str, value: Any) -> None:
        self.data[section][key] = value

    def get(self, section: str, key: str, default: Any = 0) -> Any:
        return self.data.get(section, {}).get(key, default)


FIGURES = Figures()


@pytest.fixture(scope="session")
def figures() -> Figures:
    return FIGURES


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES.data:
        return
    terminalreporter.section(f"reliability figures (scale {SCALE:g})")
    for section, values in sorted(FIGURES.data.items()):
        shown = ", ".join(f"{k} {v}" for k, v in values.items() if not isinstance(v, dict | list))
        terminalreporter.write_line(f"{section}: {shown}")
    if out := os.environ.get(FIGURES_ENV):
        Path(out).write_text(json.dumps({"scale": SCALE, **FIGURES.data}, indent=1) + "\n")


@pytest.fixture(scope="session")
def daemon_proc(tiny_model_dir, tmp_path_factory):
    """One real `infill daemon` (tiny model, CPU, 1 thread, batches of up to 8) for the fuzzing and load tests,
    token and state files in a temporary $XDG_RUNTIME_DIR. Fails a test's teardown if it died."""
    proc = DaemonProcess(tiny_model_dir, tmp_path_factory.mktemp("runtime"), "--max-batch", "8").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()
