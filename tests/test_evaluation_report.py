"""The evaluation report opened in a real headless browser: the tables render
and every plot (an embedded PNG, nothing fetched) decodes."""
import os
from pathlib import Path

import pytest

from search.evaluation import calibration, report, runner, sets
from search.services import embedding, keyword_index, spaces
from tests.test_evaluation import LEAVE, SALARY, VPN, chunk_with, ready

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.django_db,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is installed by bin/test")]


@pytest.fixture
def written_report(minilm_path, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    ready(1, LEAVE), ready(0, VPN, departments=("IT",)), ready(3, SALARY, departments=("FIN",))
    keyword_index.rebuild()
    space = spaces.create_space("minilm", minilm_path)
    embedding.backfill(space)
    records = [{"query": "nghỉ phép năm bao nhiêu ngày", "positive": "12 ngày", "_line": 1},
               {"query": "lỗi kết nối VPN", "chunk_id": chunk_with("IT helpdesk").pk, "_line": 2},
               {"query": "thưởng Tết", "positive": "Mức thưởng Tết", "_line": 3}]
    s = sets.import_records("browser-set", records)
    record = calibration.calibrate(s, space, depths=(20,), rrf_ks=(60,))
    runs = [runner.evaluate(s, space, mode, name="browser", measure=(mode == "vector"))
            for mode in ("vector", "keyword", "hybrid")]
    return report.write_report(runs, "browser", title="browser check", extra={"calibration": record})


def test_report_renders_in_headless_chromium(written_report):
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto((written_report / "report.html").as_uri())
            page.wait_for_load_state("load")
            assert page.locator("#summary tbody tr").count() == 3
            assert "MRR@10" in page.locator("#summary thead").inner_text()
            assert page.locator("table.worst").count() == 3
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert len(widths) == 3 and all(w > 0 for w in widths)  # metrics, latency, calibration curve
            assert all(u.startswith(("file:", "data:")) for u in requests)  # nothing from the network
        finally:
            browser.close()
