"""Figures with Chinese labels (pinyin attention maps) use an installed CJK font after matplotlib's own."""
from __future__ import annotations

import pytest

from scratchzoo import viz


def test_installed_cjk_fonts_are_appended_after_the_defaults():
    defaults = ["DejaVu Sans", "Arial"]
    assert viz.with_cjk_fallback(defaults, {"DejaVu Sans", "SimHei", "Noto Sans CJK SC"}) == [
        "DejaVu Sans", "Arial", "Noto Sans CJK SC", "SimHei"]  # in CJK_FONTS' order of preference
    assert viz.with_cjk_fallback(defaults, {"DejaVu Sans"}) == defaults  # none installed: unchanged
    assert viz.with_cjk_fallback(["SimHei"], {"SimHei"}) == ["SimHei"]  # never listed twice


def test_pyplot_keeps_the_default_fonts_first():
    plt = viz._pyplot()
    if plt is None:
        pytest.skip("matplotlib not installed")
    fonts = plt.rcParams["font.sans-serif"]
    assert fonts[0] == "DejaVu Sans" and len(fonts) == len(set(fonts))
