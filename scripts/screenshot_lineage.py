"""Take the README's screenshots (the asset lineage, identity_clusters) from a headless browser.

Runs ``amp-braze demo --keep-running`` (the whole loop, then the Dagster UI on the same instance),
opens the lineage page in headless Chromium through Playwright, and saves docs/asset_lineage.png;
then the identity_clusters asset page (its metadata) as docs/identity_clusters.png.

Needs (not project dependencies): ``pip install playwright`` and a Chromium, e.g. Debian's
``apt-get install chromium`` (Playwright's own browser download is not needed).

    python scripts/screenshot_lineage.py [--chromium /usr/bin/chromium] [--out docs/asset_lineage.png]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--out", default=str(REPO / "docs" / "asset_lineage.png"))
    p.add_argument("--profiles", type=int, default=2000)
    a = p.parse_args()
    from playwright.sync_api import sync_playwright

    from amp_braze.demo.run import LINEAGE_PATH

    with tempfile.TemporaryDirectory() as tmp:
        demo = subprocess.Popen(
            [sys.executable, "-m", "amp_braze.cli", "demo", "--profiles", str(a.profiles), "--keep-running",
             "--workdir", tmp],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            url = None
            deadline = time.time() + 300
            for line in demo.stdout:
                print(line, end="")
                m = re.search(r"Dagster UI:\s+(http://\S+)", line)
                if m:
                    url = m.group(1)
                    break
                if time.time() > deadline:
                    break
            if not url:
                print("the demo did not print the UI's address", file=sys.stderr)
                return 1
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=a.chromium,
                    args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync"],
                )  # fmt: skip
                page = browser.new_page(viewport={"width": 1800, "height": 1000})
                for _ in range(120):  # the webserver takes a moment to load the code location
                    try:
                        page.goto(
                            f"{url}{LINEAGE_PATH}",
                            wait_until="networkidle", timeout=10_000,
                        )  # fmt: skip
                        if page.get_by_text("customer_profiles", exact=True).count():
                            break
                    except Exception:
                        pass
                    time.sleep(1)
                skip = page.get_by_role("button", name="Skip")
                if skip.count():
                    skip.first.click()
                page.wait_for_timeout(3000)
                Path(a.out).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=a.out)
                identity = Path(a.out).with_name("identity_clusters.png")
                page.set_viewport_size({"width": 1800, "height": 2300})  # metadata and all
                page.goto(f"{url}/assets/identity_clusters", wait_until="networkidle")
                page.wait_for_timeout(3000)
                page.screenshot(path=str(identity), full_page=True)
                browser.close()
            print(f"wrote {a.out} and {identity}")
            return 0
        finally:
            os.killpg(demo.pid, signal.SIGINT)
            try:
                demo.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
