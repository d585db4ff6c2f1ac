"""Read the built documentation site as a reader does: every page in a real headless browser.

    python scripts/check_docs.py [--site docs/_build/html] [--screenshots docs/_build/screenshots]

Drives Debian's Chromium through its chromedriver (selenium; no browser is downloaded: install them with
`apt-get install chromium chromium-driver`) over every HTML page of the site, with the network cut off
(every host name resolves to nothing), and checks on each page that
  - it loads with no error in the browser's console and fetches nothing from a network,
  - every image has loaded (a picture with a width, not a broken icon),
  - every internal link leads to a page of the site, and its #anchor to an element of that page,
  - the mathematics is rendered: each formula Sphinx marked became MathJax output, and no raw TeX
    (`$$`, `\\frac`, `\\begin{`, `\\mathbb`, ...) is left in the text a reader sees (code blocks aside),
and saves a screenshot of the whole page to --screenshots (PAGE.png, folders as in the site).
Prints one line per page and exits 1 if any page fails, 2 on bad options or a missing browser.
"""
import os
import re
import shutil
import sys
import time
from urllib.parse import unquote, urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks import _cli as cli  # noqa: E402
from tinydgm import files  # noqa: E402
from tinydgm.errors import UserError  # noqa: E402

RAW_TEX = ("$$", "\\frac", "\\begin{", "\\mathbb", "\\mathcal", "\\sum_", "\\log", "\\nabla", "\\(", "\\[")
SKIP_DIRS = {"_static", "_sources", "_images", "_modules", ".doctrees"}
SCREEN_WIDTH, MAX_HEIGHT = 1280, 12000

WAIT_FOR_MATH = """
const done = arguments[arguments.length - 1];
const ready = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
    ? MathJax.startup.promise.then(() => done(true), () => done(false)) : done(null);
if (document.readyState === 'complete') ready(); else window.addEventListener('load', ready);
"""

INSPECT = """
const visible = document.body.cloneNode(true);
visible.querySelectorAll('pre, code, script, style, mjx-container, .highlight').forEach(e => e.remove());
const marked = Array.from(document.querySelectorAll('.math'));
return {
  images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  math: marked.length,
  rendered: marked.filter(e => e.querySelector('mjx-container')).length,
  text: visible.innerText,
  resources: performance.getEntriesByType('resource').map(r => r.name),
  height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
};
"""


def parse(argv):
    p = cli.Parser(prog="check_docs.py", description=cli.first_paragraph(__doc__))
    p.add_argument("--site", default="docs/_build/html", help="the built site (default: %(default)s)")
    p.add_argument("--screenshots", default="docs/_build/screenshots",
                   help="where the screenshots go, one PNG per page (default: %(default)s)")
    p.add_argument("--pages", nargs="*", default=None,
                   help="only these pages, relative to the site (default: every page)")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.site, "index.html")):
        p.error(f"--site {args.site}: no index.html there; build the site first: "
                f"python -m sphinx -W --keep-going -b html docs docs/_build/html")
    return args


def pages(site):
    for root, dirs, files in os.walk(site):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(".html"):
                yield os.path.relpath(os.path.join(root, name), site)


def browser():
    """Debian's Chromium, headless, through its own chromedriver, with every host name unresolvable."""
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chrome or not driver_path:
        raise UserError("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); "
                        f"found chromium: {chrome or 'no'}, chromedriver: {driver_path or 'no'}")
    try:
        from selenium import webdriver
    except ImportError:
        raise UserError("needs selenium: pip install -e '.[docs]'") from None
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions", "--no-first-run",
                 "--allow-file-access-from-files", "--host-resolver-rules=MAP * ~NOTFOUND",
                 f"--window-size={SCREEN_WIDTH},900", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


class Anchors:
    """The ids of each page of the site, read from its HTML once."""

    def __init__(self):
        self.ids = {}

    def __call__(self, path):
        if path not in self.ids:
            with open(path, encoding="utf-8") as f:
                self.ids[path] = set(re.findall(r"""\sid=["']([^"']+)["']""", f.read()))
        return self.ids[path]


def broken_links(links, site, anchors):
    bad, site = [], os.path.realpath(site)
    for href in links:
        url = urlparse(href)
        if url.scheme in ("http", "https", "mailto"):
            continue                                        # outside the site: not followed (offline)
        if url.scheme != "file":
            bad.append(f"{href} (a {url.scheme}: link)")
            continue
        path = os.path.realpath(unquote(url.path))
        if os.path.isdir(path):
            path = os.path.join(path, "index.html")
        if not path.startswith(site + os.sep) or not os.path.isfile(path):
            bad.append(f"{href} (no such page in the site)")
        elif url.fragment and path.endswith(".html") and unquote(url.fragment) not in anchors(path):
            bad.append(f"{href} (no #{unquote(url.fragment)} on that page)")
    return bad


def check_page(driver, site, page, screenshots, anchors):
    """The list of what is wrong with one page (empty: it reads as it should), and its counts."""
    driver.set_window_size(SCREEN_WIDTH, 900)
    driver.get("file://" + os.path.realpath(os.path.join(site, page)))
    driver.set_script_timeout(60)
    math_ok = driver.execute_async_script(WAIT_FOR_MATH)
    time.sleep(0.2)                                          # let images decode after MathJax's layout
    seen = driver.execute_script(INSPECT)
    problems = []
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"console: {entry['message'][:300]}")
    outside = [r for r in seen["resources"] if not r.startswith("file://")]
    problems += [f"fetched from a network: {r}" for r in outside]
    problems += [f"image did not load: {src}" for src, ok in seen["images"] if not ok]
    problems += [f"broken link: {b}" for b in broken_links(seen["links"], site, anchors)]
    if math_ok is False:
        problems.append("MathJax failed to start")
    if seen["rendered"] < seen["math"]:
        problems.append(f"mathematics not rendered: {seen['math'] - seen['rendered']} of {seen['math']} formulas")
    raw = sorted({t for t in RAW_TEX if t in seen["text"]})
    if raw:
        problems.append(f"raw TeX in the visible text: {' '.join(raw)}")
    shot = os.path.join(screenshots, os.path.splitext(page)[0] + ".png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    driver.set_window_size(SCREEN_WIDTH, min(int(seen["height"]) + 100, MAX_HEIGHT))
    time.sleep(0.2)
    files.write_bytes(shot, driver.get_screenshot_as_png())               # whole, as every file of the project
    counts = f"{len(seen['images'])} images, {len(seen['links'])} links, {seen['math']} formulas"
    return problems, counts


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    return cli.run("check_docs.py", lambda: check_site(args))


def check_site(args):
    chosen = args.pages if args.pages is not None else list(pages(args.site))
    missing = [p for p in chosen if not os.path.isfile(os.path.join(args.site, p))]
    if missing:
        raise UserError(f"--pages: not in {args.site}: {', '.join(missing)}")
    driver = browser()
    failed, anchors = 0, Anchors()
    try:
        for page in chosen:
            problems, counts = check_page(driver, args.site, page, args.screenshots, anchors)
            print(f"{'ok  ' if not problems else 'FAIL'} {page}  ({counts})", flush=True)
            for p in problems:
                print(f"       {p}")
            failed += bool(problems)
    finally:
        driver.quit()
    print(f"{len(chosen) - failed} passed, {failed} failed (screenshots in {args.screenshots})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
