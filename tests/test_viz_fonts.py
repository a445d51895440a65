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


def test_drawing_keeps_the_default_fonts_first_and_only_while_drawing(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    defaults = list(matplotlib.rcParams["font.sans-serif"])
    fonts = viz.sans_serif_with_cjk()
    assert fonts[:len(defaults)] == defaults and len(fonts) == len(set(fonts))
    monkeypatch.setattr(viz, "installed_fonts", lambda: {"DejaVu Sans", "SimHei"})
    with viz.new_figure(tmp_path / "figure.png"):  # the fallback is set while a figure is drawn ...
        assert matplotlib.rcParams["font.sans-serif"] == [*defaults, "SimHei"]
    assert matplotlib.rcParams["font.sans-serif"] == defaults  # ... and only then
    assert (tmp_path / "figure.png").exists()


def test_chinese_labels_fall_back_to_code_points_without_a_cjk_font():
    from scratchzoo.viz.transformer import _drawable
    assert _drawable(["银行", "a"], cjk_font_installed=True) == ["银行", "a"]
    assert _drawable(["银行", "a"], cjk_font_installed=False) == ["U+94F6 U+884C", "a"]  # not empty boxes
    assert _drawable(["bank"], cjk_font_installed=False) == ["bank"]
