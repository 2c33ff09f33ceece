"""Open the built book in a real headless browser, offline, as a reader would (part of the README's test command).

    python scripts/browser_check.py [--html _build/html] [--shots _build/screenshots]

Serves ``_build/html`` on localhost, drives Debian's Chromium through Selenium (``/usr/bin/chromium`` and
``/usr/bin/chromedriver``: ``scripts/setup_browser.sh`` installs them), and for every page of the table of contents
checks that it renders: a title, no console error, every image loaded, every formula typeset by MathJax from the
book's own files (nothing is fetched from another host), and no raw ``$...$`` TeX left in the text. On the first
page it also checks that the verdicts are on the first screen, and again with ``index.html`` opened from the disk
(``file://``, no server), as a reader offline would. A screenshot of every page's first screen goes to
``--shots``. Exit 0 when every page passes, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import threading
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [  # headless, offline, no first-run work (what this machine's Chromium needs to start cleanly)
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1366,900",
]


def pages() -> List[str]:
    """The book's pages in order, as paths of their HTML files relative to the build folder (from ``_toc.yml``)."""
    import yaml

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files += [s["file"] for s in ch.get("sections", [])]
    return [re.sub(r"\.(md|ipynb)$", "", f) + ".html" for f in files]


def serve(root: Path):
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would drown the report
        pass


CHECK_JS = """
const done = arguments[arguments.length - 1];
const hasMath = document.querySelectorAll('.math').length;
const waitStartup = (left) => new Promise((resolve, reject) => {
  const loaded = document.readyState === 'complete' && document.body;
  if (loaded && (!hasMath || (window.MathJax && MathJax.startup && MathJax.startup.promise))) return resolve();
  if (left <= 0) return reject('MathJax did not start');
  setTimeout(() => waitStartup(left - 1).then(resolve, reject), 100);
});
waitStartup(300).then(() => hasMath ? MathJax.startup.promise : null).then(() => {
  const imgs = Array.from(document.querySelectorAll('article img'));
  const text = (document.querySelector('article') || document.body).innerText;
  const scripts = Array.from(document.querySelectorAll('script[src]')).map(s => s.src);
  done({
    title: document.title,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    images: imgs.length,
    math: hasMath,
    typeset: document.querySelectorAll('mjx-container').length,
    mathjax: scripts.filter(s => s.includes('mathjax')),
    foreign: scripts.filter(s => !s.startsWith(location.origin)),
    rawTex: (text.match(/\\$[^$\\n]{0,80}\\\\[a-zA-Z]+[^$\\n]{0,80}\\$/g) || []).slice(0, 3),
  });
}).catch(e => done({error: String(e) + ' ' + String(e && e.stack).slice(0, 300)}));
"""

FIRST_SCREEN_JS = """
const t = document.querySelector('article table');
if (!t) return null;
const r = t.getBoundingClientRect();
return {top: r.top, height: window.innerHeight, verdicts: (t.innerText.match(/reproduced|inconclusive/g) || []).length};
"""


def check(html: Path, shots: Path) -> List[str]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    shots.mkdir(parents=True, exist_ok=True)
    httpd = serve(html)
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    problems: List[str] = []
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(60)
    try:
        order = pages()  # the table of contents, read once
        for page in order:
            if not (html / page).is_file():
                problems.append(f"{page}: not built")
                continue
            driver.get(base + page)
            got = driver.execute_async_script(CHECK_JS)
            if got.get("error") and "innerText" in got["error"]:  # the page was still being replaced: look again
                got = driver.execute_async_script(CHECK_JS)
            if got.get("error"):
                problems.append(f"{page}: MathJax failed ({got['error']})")
                continue
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            if errors:
                problems.append(f"{page}: console errors: {errors[:3]}")
            if not got["title"]:
                problems.append(f"{page}: no title")
            if got["broken"]:
                problems.append(f"{page}: images that did not load: {got['broken'][:3]}")
            if got["foreign"]:
                problems.append(f"{page}: scripts from another host: {got['foreign'][:3]}")
            if any(not s.startswith(base) for s in got["mathjax"]):
                problems.append(f"{page}: MathJax not served by the book: {got['mathjax']}")
            if got["math"] and got["typeset"] < got["math"]:
                problems.append(f"{page}: {got['math']} formulas, {got['typeset']} typeset by MathJax")
            if got["rawTex"]:
                problems.append(f"{page}: formulas left as raw TeX: {got['rawTex']}")
            if page == order[0]:
                first = driver.execute_script(FIRST_SCREEN_JS)
                if not first or first["top"] >= first["height"] or first["verdicts"] == 0:
                    problems.append(f"{page}: the verdicts table is not on the first screen ({first})")
            driver.save_screenshot(str(shots / (page.replace("/", "__").replace(".html", ".png"))))
            print(
                f"[browser] {page}: {got['images']} images, {got['typeset']} formulas typeset"
                + (f"; {len(errors)} console errors" if errors else "")
            )
        # as a reader opens it: index.html from the disk (file://, no server), which redirects to the first page
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get((html / "index.html").resolve().as_uri())
        WebDriverWait(driver, 20).until(
            lambda d: d.current_url.endswith(order[0]) and d.find_elements("css selector", "article table")
        )
        first = driver.execute_script(FIRST_SCREEN_JS)
        if not first or first["top"] >= first["height"] or first["verdicts"] == 0:
            problems.append(f"index.html opened from disk: the verdicts table is not on the first screen ({first})")
        driver.save_screenshot(str(shots / "index_from_disk.png"))
        driver.get((html / "book" / "method.html").resolve().as_uri())
        got = driver.execute_async_script(CHECK_JS)
        if got.get("error") or (got["math"] and got["typeset"] < got["math"]):
            problems.append(f"book/method.html opened from disk: formulas not typeset ({got})")
        print(f"[browser] index.html from disk: {first}; book/method.html from disk: {got.get('typeset')} formulas")
    finally:
        driver.quit()
        httpd.shutdown()
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--html", type=Path, default=REPO / "_build" / "html")
    ap.add_argument("--shots", type=Path, default=REPO / "_build" / "screenshots")
    a = ap.parse_args(argv)
    if not (a.html / "index.html").is_file():
        print(f"[browser] no built book at {a.html}: run bash scripts/book.sh first", file=sys.stderr)
        return 1
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).is_file():
            print(f"[browser] {exe} is missing: run bash scripts/setup_browser.sh", file=sys.stderr)
            return 1
    problems = check(a.html, a.shots)
    for p in problems:
        print(f"[browser] FAIL {p}", file=sys.stderr)
    print(f"[browser] {len(pages())} pages, {len(problems)} problems; screenshots in {a.shots}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
