"""Screenshots of the migration admin pages for docs/migrating.md, taken from a
running portal with Debian's chromium (never a downloaded browser).

    .venv/bin/python docs/tools/admin_screenshots.py --base http://127.0.0.1:8000 \
        [--user admin --password demo-portal-2024] [--lang en] [--out docs/images]

Takes: the list of migrations, the newest migration's page (progress, comparison,
A/B report, retirement, history), and the "add" form. Pages are whatever the
portal shows at that moment: run it when a migration has reached the state you
want to show.
"""
from __future__ import annotations

import argparse
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="demo-portal-2024")
    parser.add_argument("--lang", default="en", choices=["en", "vi"])
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--prefix", default="migration")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": args.width, "height": 900}, locale=args.lang,
                                extra_http_headers={"Accept-Language": args.lang})
        page.set_default_timeout(30_000)
        page.goto(f"{args.base}/admin/login/?next=/admin/")
        page.fill("input[name=username]", args.user)
        page.fill("input[name=password]", args.password)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_load_state("networkidle")
        if "/login/" in page.url:
            raise SystemExit(f"could not sign in as {args.user} (create_demo_users makes the demo accounts)")
        shots = []
        page.goto(f"{args.base}/admin/search/spacemigration/")
        shots.append(_shot(page, out / f"{args.prefix}-list.png"))
        link = page.locator("#result_list tbody tr th a").first
        if link.count():
            link.click()
            page.wait_for_load_state("networkidle")
            shots.append(_shot(page, out / f"{args.prefix}-change.png"))
        page.goto(f"{args.base}/admin/search/spacemigration/add/")
        shots.append(_shot(page, out / f"{args.prefix}-add.png"))
        browser.close()
    for path in shots:
        print(path)


def _shot(page, path: Path) -> Path:
    page.screenshot(path=str(path), full_page=True)
    return path


if __name__ == "__main__":
    main()
