"""The front-end assets: Chart.js is served from static/ (no CDN), at the version package-lock.json pins,
with its licences beside it; the pages load nothing from elsewhere."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDORED = ROOT / "static" / "vendor" / "chartjs"


def locked_version(package: str) -> str:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    return lock["packages"][f"node_modules/{package}"]["version"]


def test_vendored_chartjs_is_the_locked_version_with_its_licences():
    header = (VENDORED / "chart.umd.min.js").read_text()[:200]
    assert re.search(r"Chart\.js v(\S+)", header).group(1) == locked_version("chart.js")
    assert "MIT License" in (VENDORED / "LICENSE.md").read_text()
    assert "MIT License" in (VENDORED / "LICENSE-kurkle-color.md").read_text()
    installed = ROOT / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
    if installed.exists():  # after `npm ci`: the vendored file is exactly the package's
        assert installed.read_bytes() == (VENDORED / "chart.umd.min.js").read_bytes()


def test_axe_core_is_pinned_for_the_browser_tests():
    package = json.loads((ROOT / "package.json").read_text())
    assert package["devDependencies"]["axe-core"] == locked_version("axe-core")
    assert package["dependencies"]["chart.js"] == locked_version("chart.js")


def test_templates_and_scripts_reference_no_outside_host():
    sources = [*ROOT.joinpath("templates").rglob("*.html"), *ROOT.joinpath("static", "batches").glob("*")]
    for source in sources:
        assert not re.search(r"(src|href)=\"(https?:)?//", source.read_text()), source
