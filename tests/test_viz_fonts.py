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


def test_chinese_labels_fall_back_to_code_points_without_a_cjk_font():
    from scratchzoo.viz.transformer import _drawable
    assert _drawable(["银行", "a"], cjk_font_installed=True) == ["银行", "a"]
    assert _drawable(["银行", "a"], cjk_font_installed=False) == ["U+94F6 U+884C", "a"]  # not empty boxes
    assert _drawable(["bank"], cjk_font_installed=False) == ["bank"]
