"""The doctors' workbench (/ui) in headless Chromium driven by Selenium, against the Serve test app.

Needs Debian's ``chromium`` and ``chromium-driver`` (and ``fonts-noto-cjk`` for readable
screenshots); without them these tests skip, except under CI (``$CI`` set), where they fail.
Screenshots go to the test's temporary directory and, when ``$MEDGO_SCREENSHOT_DIR`` is set, are
copied there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from medgo.serve.store import FeedbackRow, FeedbackStore
from tests.serve.conftest import DOCTOR_KEYS, SCOPED_KEYS

PAYLOAD = '<script>window.__x=1</script><img src=x onerror="window.__y=1">'
WAIT_S = 90
STEPS = """
window.__steps = [];
new MutationObserver(() => {
  const texts = document.querySelectorAll('#conversation .assistant .text');
  const n = texts.length ? texts[texts.length - 1].textContent.length : 0;
  if (n && window.__steps[window.__steps.length - 1] !== n) window.__steps.push(n);
}).observe(document.getElementById('conversation'), {subtree: true, childList: true, characterData: true});
"""


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests: .ci/run installs chromium, chromium-driver and fonts-noto-cjk)")
    pytest.skip(f"{reason}: apt-get install chromium chromium-driver fonts-noto-cjk to run the workbench's browser tests")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Debian's chromedriver (no driver download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_path = shutil.which("chromedriver")
    if not chrome or not driver_path:
        _missing("no Chromium browser or chromedriver on PATH")
    if os.environ.get("CI") and not subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True).stdout.strip():
        pytest.fail("no CJK font (fonts-noto-cjk): Chinese text would render as empty boxes")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900", "--lang=zh-CN"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    if os.environ.get("MEDGO_SCREENSHOT_DIR"):
        target = Path(os.environ["MEDGO_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def wait(driver, condition, timeout: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def by_id(driver, element_id: str):
    return driver.find_element("id", element_id)


def press(driver, key: str, modifier: str | None = None) -> None:
    """Type ``key`` into whatever has the focus (the page itself when nothing does)."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver)
    if modifier:
        actions.key_down(modifier)
    actions.send_keys(key)
    if modifier:
        actions.key_up(modifier)
    actions.perform()


def sign_in(driver, main_app, key: str) -> None:
    """A fresh tab state: load the page, forget any key, paste ``key``, wait for the name to show."""
    driver.get(f"{main_app.url}/ui/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{main_app.url}/ui/")
    by_id(driver, "key-input").send_keys(key)
    by_id(driver, "signin-button").click()
    wait(driver, lambda d: by_id(d, "who-name").text.startswith("密钥："))


def feedback_rows(main_app, response_id: str) -> list[FeedbackRow]:
    store = FeedbackStore(main_app.db, create=False)
    try:
        with Session(store.engine) as session:
            return list(session.scalars(select(FeedbackRow).where(FeedbackRow.response_id == response_id).order_by(FeedbackRow.id)))
    finally:
        store.close()


def add_completions(main_app, model: str, prompts_answers: list[tuple[str, str]]) -> list[str]:
    """Stored answers of ``model``, newest first in the order given, as the API would record them."""
    store = FeedbackStore(main_app.db, create=False)
    now, ids = datetime.now(timezone.utc), []
    for i, (prompt, answer) in enumerate(prompts_answers):
        rid = f"chatcmpl-wb-{model}-{i}-{now.timestamp():.0f}"
        store.add_completion(id=rid, created=now - timedelta(seconds=i), endpoint="chat", model=model, base_version="tiny@test", adapter=None,
                             adapter_version=None, prompt=[{"role": "user", "content": prompt}], answer=answer, params={}, finish_reason="stop",
                             prompt_tokens=5, completion_tokens=5, latency_s=0.1)
        ids.append(rid)
    store.close()
    return ids


def test_chat_streams_and_a_doctor_corrects_an_answer(browser, main_app, tmp_path):
    name, (scopes, key) = "dr-chat", DOCTOR_KEYS["dr-chat"]
    sign_in(browser, main_app, key)
    assert by_id(browser, "who-name").text == f"密钥：{name}" and by_id(browser, "who-scopes").text == "权限：chat, feedback"
    assert browser.execute_script("return [sessionStorage.getItem('medgo.apiKey'), localStorage.length, document.cookie]") == [key, 0, ""]
    assert not by_id(browser, "tab-queue").is_displayed() and not by_id(browser, "tab-versions").is_displayed()
    wait(browser, lambda d: by_id(d, "model-select").get_attribute("value") == "medgo-tiny")
    browser.execute_script(STEPS)
    by_id(browser, "max-tokens").send_keys("48")
    by_id(browser, "prompt").send_keys("医生您好，我最近经常头痛。" + PAYLOAD)
    by_id(browser, "send").click()
    turn = wait(browser, lambda d: d.find_element("css selector", ".turn.assistant[data-response-id]"))
    steps = browser.execute_script("return window.__steps")
    assert len(steps) >= 2 and steps == sorted(steps), f"the answer should appear in several steps, saw lengths {steps}"
    user_text = browser.find_element("css selector", ".turn.user .text").text
    assert user_text.endswith(PAYLOAD), "the doctor's text is shown as typed"
    assert browser.execute_script("return [window.__x, window.__y, document.querySelectorAll('#conversation script, #conversation img').length]") == [None, None, 0]
    meta = turn.find_element("css selector", ".meta").text
    rid = turn.get_attribute("data-response-id")
    assert meta.startswith("模型 medgo-tiny · 基座版本 tiny") and rid in meta

    turn.find_element("css selector", ".correction").send_keys("头痛反复发作应就医，排查高血压等原因。")
    turn.find_element("css selector", ".comment").send_keys("回答不切题")
    turn.find_element("css selector", "button.unacceptable").click()
    status = turn.find_element("css selector", ".judge-status")
    wait(browser, lambda d: status.text.startswith("已保存"))
    (row,) = feedback_rows(main_app, rid)
    assert (row.reviewer, row.verdict, row.corrected_answer, row.comment, row.supersedes) == (name, "unacceptable", "头痛反复发作应就医，排查高血压等原因。", "回答不切题", None)
    screenshot(browser, tmp_path, "workbench-chat.png")

    turn.find_element("css selector", "button.acceptable").click()  # changing the verdict: a new judgement
    wait(browser, lambda d: "取代评价" in status.text)
    first, second = feedback_rows(main_app, rid)
    assert first.id == row.id and first.verdict == "unacceptable" and (second.verdict, second.supersedes, second.reviewer) == ("acceptable", row.id, name)
    assert status.text.endswith("当前评价：可接受") and f"#{second.id}" in status.text
    assert turn.find_element("css selector", ".judge").get_attribute("data-verdict") == "acceptable"


def test_review_queue_shows_answers_as_text_and_keys_judge_three_in_a_row(browser, main_app, tmp_path):
    name, (_, key) = "dr-review", DOCTOR_KEYS["dr-review"]
    model = f"kbd-{datetime.now().strftime('%H%M%S%f')}"
    ids = add_completions(main_app, model, [
        ("患者张三，电话13812345678，问：血压160/100要紧吗？", PAYLOAD),
        ("孩子发烧38.5度怎么办？", "多喝水，观察精神状态。"),
        ("胃痛两天了。", "建议服用抗生素。"),
        ("失眠怎么调理？", "规律作息。"),
    ])
    sign_in(browser, main_app, key)
    assert not by_id(browser, "tab-chat").is_displayed() and by_id(browser, "tab-queue").is_displayed()
    wait(browser, lambda d: model in [o.get_attribute("value") for o in d.find_elements("css selector", "#queue-model option")])
    Select(by_id(browser, "queue-model")).select_by_value(model)

    def showing(rid):
        return lambda d: d.execute_script("const c = document.querySelector('.queue-card'); return c && c.dataset.responseId") == rid

    wait(browser, lambda d: showing(ids[0])(d) and by_id(d, "queue-position").text == "第 1 / 4 条")  # the filtered queue
    card = browser.find_element("css selector", ".queue-card")
    assert card.find_element("css selector", ".judged-answer .text").text == PAYLOAD, "the model's output is shown as text"
    assert browser.execute_script("return [window.__x, window.__y, document.querySelectorAll('#queue-item script, #queue-item img').length]") == [None, None, 0]
    question = card.find_element("css selector", ".turn.user .text").text
    assert "13812345678" not in question and "[电话]" in question, "the queue shows de-identified text"
    screenshot(browser, tmp_path, "workbench-queue.png")

    for key, then in (("a", ids[1]), ("u", ids[2]), ("n", ids[3])):
        press(browser, key)
        wait(browser, showing(then))
    press(browser, "c")
    assert browser.switch_to.active_element.get_attribute("class") == "correction"
    browser.switch_to.active_element.send_keys("保持规律作息，睡前避免使用手机。")
    press(browser, Keys.ENTER, Keys.CONTROL)
    wait(browser, showing(ids[2]))  # the queue again: only the skipped one is left
    judged = {rid: [(r.verdict, r.corrected_answer, r.reviewer) for r in feedback_rows(main_app, rid)] for rid in ids}
    assert judged == {
        ids[0]: [("acceptable", None, name)],
        ids[1]: [("unacceptable", None, name)],
        ids[2]: [],
        ids[3]: [("unacceptable", "保持规律作息，睡前避免使用手机。", name)],
    }


def test_a_chat_key_sees_no_review_queue_and_the_api_refuses_it(browser, main_app):
    sign_in(browser, main_app, SCOPED_KEYS["chat"])
    assert by_id(browser, "who-scopes").text == "权限：chat"
    assert by_id(browser, "tab-chat").is_displayed()
    assert not by_id(browser, "tab-queue").is_displayed() and not by_id(browser, "view-queue").is_displayed()
    refused = httpx.get(f"{main_app.url}/v1/review/queue", headers={"Authorization": f"Bearer {SCOPED_KEYS['chat']}"}, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"


def test_versions_page_shows_acceptance_per_version(browser, main_app):
    sign_in(browser, main_app, main_app.headers["Authorization"].split()[1])
    by_id(browser, "tab-versions").click()
    row = wait(browser, lambda d: next((r for r in d.find_elements("css selector", "#versions-table tbody tr") if r.text.startswith("medgo-tiny ")), None))
    stats = httpx.get(f"{main_app.url}/v1/versions/stats", headers=main_app.headers, timeout=30).json()["data"]
    base = next(s for s in stats if s["model"] == "medgo-tiny")
    cells = [c.text for c in row.find_elements("css selector", "td")]
    assert cells[:7] == ["medgo-tiny", base["base_version"], "—", "—", str(base["answers"]), str(base["judgements"]), str(base["acceptable"])]
