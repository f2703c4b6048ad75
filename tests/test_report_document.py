"""fastsynth.report.Document: one block list, two renderings that agree."""
import base64
import re

import numpy as np
import pytest

from fastsynth.report import Document
from fastsynth.report.histogram import histogram_png


def test_markdown_and_html_hold_the_same_blocks(tmp_path):
    png = histogram_png(np.array([0.3, 0.4, 0.4, 0.9]), tmp_path / "h.png", title="t", xlabel="x")
    doc = Document("A <title>")
    doc.h("Section")
    doc.p("Text with <tags> & ampersands")
    doc.table(["a", "b|c"], [[1, "x|y"], [2.5, None]])
    doc.figure(png, "the histogram")
    md = doc.markdown()
    assert md.startswith("# A <title>\n")
    assert "## Section" in md and "Text with <tags>" in md
    assert "| a | b\\|c |" in md and "| 1 | x\\|y |" in md and "| 2.5 | None |" in md
    assert "![the histogram](h.png)" in md
    page = doc.html()
    assert "<title>A &lt;title&gt;</title>" in page
    assert "Text with &lt;tags&gt; &amp; ampersands" in page
    (data,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert base64.b64decode(data) == png.read_bytes()
    assert "<td>x|y</td>" in page
    paths = doc.write(tmp_path, "r")
    assert paths["markdown"].read_text() == md and paths["html"].read_text() == page
    assert not list(tmp_path.glob(".*tmp-*"))


def test_missing_figure_fails_at_render(tmp_path):
    doc = Document("t")
    doc.figure(tmp_path / "absent.png", "gone")
    with pytest.raises(FileNotFoundError):
        doc.html()
