"""The quality registry (infill/quality.py): names, what each preset changes, the defaults per entry point."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from conftest import ROOT

from infill.errors import UnknownStrategyError
from infill.quality import DEFAULTS, NAMES, QUALITIES, Defaults, quality
from infill.request import InfillRequest
from infill.sampler import SamplerConfig, quality_preset


def test_an_unknown_quality_fails_when_the_request_is_made_and_lists_the_presets():
    with pytest.raises(UnknownStrategyError, match="unknown quality preset 'best'; choose one of: balanced, fast"):
        InfillRequest(text="x = 1\n", cursor=4, quality="best")
    with pytest.raises(UnknownStrategyError):
        dataclasses.replace(InfillRequest(text="x = 1\n", cursor=4), quality="FAST")


def test_sampler_settings_derive_from_the_registry():
    fields = {f.name for f in dataclasses.fields(SamplerConfig)}
    for name, preset in QUALITIES.items():
        assert set(preset.sampler) <= fields, name
        assert quality_preset(name) == SamplerConfig(**preset.sampler)
    assert quality_preset("balanced") == SamplerConfig()  # the released settings
    assert not quality("fast").escalate and quality("fast").repair_rounds == 0  # no second chances while typing


def test_defaults_name_presets_and_say_which_entry_point_gets_which():
    assert (DEFAULTS.typing, DEFAULTS.action, DEFAULTS.cli, DEFAULTS.request) == ("fast", "balanced", "balanced",
                                                                                   "balanced")
    assert NAMES == ("fast", "balanced", "thinking")
    with pytest.raises(UnknownStrategyError):
        Defaults(typing="instant")


def test_the_registry_loads_without_torch():
    code = "import sys, infill.quality, infill.request; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
