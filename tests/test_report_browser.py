"""report.html in a real headless browser (Debian's chromium): every embedded image loads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from classaware.study.report import write_report  # noqa: E402
from test_study_report import build_fake_study  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"

PROBE = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var out = document.createElement("pre");
  out.id = "probe";
  var h2 = document.querySelector("h2");
  var first = document.querySelector("ul");
  out.textContent = "PROBE images=" + imgs.length + " loaded=" + ok + " widths=" +
    imgs.map(function (i) { return i.naturalWidth; }).join(",") + " first_h2=" + h2.textContent +
    " verdict_items=" + (first ? first.children.length : 0);
  document.body.appendChild(out);
});
</script>
"""


def _chromium() -> str:
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required under CI=true")
        pytest.skip("chromium not installed")
    return path


def test_every_image_loads_in_headless_chromium(tmp_path):
    browser = _chromium()
    root = tmp_path / "study"
    study = build_fake_study(root)
    html_path = write_report(study, root)
    html = html_path.read_text()
    n_img = len(re.findall(r"<img ", html))
    assert n_img >= 5
    # the report is self-contained: move it away from its plots/ folder before opening it
    probe = tmp_path / "elsewhere" / "probe.html"
    probe.parent.mkdir()
    # plus one broken control image, to show the probe tells a failed image from a loaded one
    control = '<img id="control" src="data:image/png;base64,iVBORw0KGgoAAAA=">'
    probe.write_text(html.replace("</body>", control + PROBE + "</body>"))
    shutil.rmtree(root / "plots")
    profile = tmp_path / "profile"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
           "--dump-dom", probe.as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r"PROBE images=(\d+) loaded=(\d+) widths=([\d,]*) first_h2=(\w+) "
                  r"verdict_items=(\d+)", p.stdout)
    assert m, f"no probe output; stderr: {p.stderr[-2000:]}"
    widths = [int(w) for w in m.group(3).split(",")]
    assert int(m.group(1)) == n_img + 1
    assert int(m.group(2)) == n_img  # every report image, not the broken control
    assert all(w > 100 for w in widths[:-1]) and widths[-1] == 0
    # the page opens with the verdict: one item per variant (ce, push)
    assert m.group(4) == "Verdict" and int(m.group(5)) == len(study.variants)
