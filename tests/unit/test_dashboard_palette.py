"""The dashboard's text is readable: every text colour of its stylesheet reaches WCAG 2.x AA contrast
(4.5:1 for body text) on the background it is drawn on, computed from the CSS's own custom properties
(so a change of palette that breaks contrast fails here)."""

from __future__ import annotations

import re
from importlib import resources

import pytest

CSS = resources.files("runner.dashboard").joinpath("static", "dashboard.css").read_text()
PALETTE = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})\s*;", CSS))
# (text, background): every pair the stylesheet draws text with
PAIRS = [("fg", "bg"), ("muted", "bg"), ("link", "bg"), ("ok", "bg"), ("bad", "bg"), ("warn", "bg"),
         ("muted", "code-bg"), ("code-fg", "code-bg"), ("header-fg", "header-bg"), ("button-fg", "button-bg"),
         ("danger-fg", "danger-bg"), ("notice-fg", "notice-bg"), ("error-fg", "error-bg"), ("fg", "code-bg"),
         ("ok", "code-bg"), ("bad", "code-bg"), ("warn", "code-bg")]
AA = 4.5


def _luminance(hex_colour: str) -> float:
    """Relative luminance (WCAG 2.x) of an sRGB colour."""
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_contrast_formula_gives_the_known_ratios() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the lightest AA grey on white


@pytest.mark.parametrize(("text", "background"), PAIRS)
def test_each_text_colour_reaches_aa_on_its_background(text: str, background: str) -> None:
    ratio = contrast(PALETTE[text], PALETTE[background])
    assert ratio >= AA, f"--{text} {PALETTE[text]} on --{background} {PALETTE[background]}: {ratio:.2f}:1 < {AA}:1"


def test_every_colour_of_the_stylesheet_is_a_palette_variable() -> None:
    """A hex colour written outside the palette would escape the check above."""
    outside = re.sub(r":root\s*\{[^}]*\}", "", CSS)
    assert not re.findall(r"#[0-9a-fA-F]{3,8}\b", outside)
    assert "url(" not in CSS and "@import" not in CSS  # nothing fetched from elsewhere
