"""report.html in a real headless Chromium: every picture of a run report and of a comparison
loads (naturalWidth > 0), and the page renders to a screenshot. Needs the Debian package
``chromium``; skipped where no Chromium is on PATH."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import tiny_config

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="no headless Chromium on PATH (Debian: apt-get install chromium)")]

# Appended to a copy of the page (same folder, so relative image paths resolve): after the
# load event, write what every <img> did into the DOM, which --dump-dom then prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const ok = (img) => img.complete && img.naturalWidth > 0;
  const out = document.createElement("pre");
  out.id = "zhcls-image-check";
  out.textContent = JSON.stringify({
    total: images.length,
    loaded: images.filter(ok).map((img) => [img.getAttribute("src"), img.naturalWidth]),
    broken: images.filter((img) => !ok(img)).map((img) => img.getAttribute("src")),
  });
  document.body.appendChild(out);
});
</script>"""


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def image_check(page: Path, profile: Path) -> dict:
    probe = page.with_name("_image_check.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                     encoding="utf-8")
    try:
        result = chromium(["--virtual-time-budget=15000", "--dump-dom", probe.as_uri()], profile)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="zhcls-image-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no probe output from Chromium; stderr:\n{result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, path: Path, profile: Path, height: int) -> tuple[int, int]:
    result = chromium([f"--screenshot={path}", f"--window-size=1280,{height}", page.as_uri()],
                      profile)
    assert path.is_file(), f"no screenshot; stderr:\n{result.stderr[-2000:]}"
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def pages(tmp_path_factory, tiny_model, tiny_data) -> dict[str, Path]:
    from zhcls.report.run_report import build_report
    from zhcls.workflows.pipeline import train_and_report as train

    root = tmp_path_factory.mktemp("browser-runs")
    runs = [train(tiny_config(tiny_model, objective__name=objective), tiny_data,
                  root / name).output_dir for name, objective in (("ce", "ce"), ("scl", "ce+scl"))]
    single = build_report([runs[0]])
    return {"single": single, "compare": build_report(runs)}


def test_every_image_of_the_run_report_loads(pages, tmp_path):
    check = image_check(pages["single"], tmp_path / "profile")
    assert check["broken"] == []
    sources = [src for src, _ in check["loaded"]]
    for name in ("curves.png", "confusion_matrix.png", "confusion_matrix_normalized.png",
                 "per_class.png", "representation_map.png"):
        assert name in sources
    assert check["total"] == len(sources) >= 7  # + the test set's pictures from eval_test/
    assert all(width > 300 for _, width in check["loaded"])
    width, height = screenshot(pages["single"], tmp_path / "single.png", tmp_path / "profile",
                               5000)
    assert (width, height) == (1280, 5000)
    assert (tmp_path / "single.png").stat().st_size > 100_000  # a page of pictures, not blank


def test_every_image_of_the_comparison_loads(pages, tmp_path):
    check = image_check(pages["compare"], tmp_path / "profile")
    assert check["broken"] == []
    sources = [src for src, _ in check["loaded"]]
    assert "representation_maps.png" in sources
    assert sum(src.endswith("/report/curves.png") for src in sources) == 2
    assert check["total"] == 5


def test_probe_reports_a_missing_image(tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png"></body></html>',
                    encoding="utf-8")
    check = image_check(page, tmp_path / "profile")
    assert check == {"total": 1, "loaded": [], "broken": ["missing.png"]}
