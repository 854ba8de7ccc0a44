"""The memory page's pictures in docs/: LoCoMo's conv-26 imported without a model, served by `memoryos-mcp ui`,
photographed in Debian's headless Chromium (the browser test's setup).

    .venv/bin/python scripts/page_pictures.py [--out docs] [--query "what did Melanie paint"]

Writes memory-page.png (a search of mid-term memory, its first result's why opened) and memory-page-overview.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def main() -> int:
    from locomo import load_conversations
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--query", default="what did Melanie paint")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
    )
    args = parser.parse_args()
    cli = str(Path(sys.executable).with_name("memoryos-mcp"))
    with tempfile.TemporaryDirectory(prefix="memoryos-pictures-") as tmp:
        history, data_dir = Path(tmp) / "conv-26.jsonl", Path(tmp) / "data"
        (conversation,) = load_conversations(args.data, ["conv-26"])
        history.write_text(
            "".join(
                json.dumps(
                    {"user_input": p.user_input, "agent_response": p.agent_response, "timestamp": p.timestamp}
                )
                + "\n"
                for p in conversation.pages
            )
        )
        where = ["--data-dir", str(data_dir), "--user-id", "caroline"]
        subprocess.run([cli, "import", str(history), *where, "--sentences", "now"], check=True)
        server = subprocess.Popen(
            [cli, "ui", *where, "--ui-port", str(args.port)], stdout=subprocess.PIPE, text=True
        )
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={Path(tmp) / 'profile'}")
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            assert server.stdout is not None
            browser.get(server.stdout.readline().strip())  # the address `ui` prints, with a single-use ticket
            time.sleep(1)
            browser.save_screenshot(str(args.out / "memory-page-overview.png"))
            browser.get(
                f"http://127.0.0.1:{args.port}/pages?{urlencode({'user': 'caroline', 'q': args.query, 'tier': 'mid_term'})}"
            )
            browser.find_element(By.CSS_SELECTOR, "details.why summary").click()
            time.sleep(0.5)
            browser.save_screenshot(str(args.out / "memory-page.png"))
        finally:
            browser.quit()
            server.terminate()
            server.wait(30)
    sys.stdout.write(f"wrote {args.out / 'memory-page.png'} and {args.out / 'memory-page-overview.png'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
