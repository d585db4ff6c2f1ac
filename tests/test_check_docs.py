"""scripts/check_docs.py, the documentation's reader in a real browser: it must see what a reader would.

A small site made here holds one page of each fault (a broken image, a link to a missing page or anchor, raw TeX
left in the text, a script error) beside a page without any: the check must pass the good page and name each
fault.  Needs Debian's chromium and chromium-driver and selenium (the `[docs]` extra); skipped without them
(CI installs them and runs this file after building the site).
"""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, "scripts", "check_docs.py")

needs_browser = pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")) or
    subprocess.run([sys.executable, "-c", "import selenium"], capture_output=True).returncode != 0,
    reason="needs chromium, chromium-driver and selenium (pip install -e '.[docs]')")

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def page(body, head=""):
    return f"<!doctype html><html><head><meta charset='utf-8'>{head}</head><body>{body}</body></html>"


def check(*args):
    p = subprocess.run([sys.executable, CHECK, *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_without_a_built_site_it_is_one_line(tmp_path):
    code, out, err = check("--site", str(tmp_path / "nowhere"))
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and "no index.html" in err, err


@needs_browser
def test_a_missing_page_is_one_line(tmp_path):
    (tmp_path / "index.html").write_text(page("<p>home</p>"))
    code, out, err = check("--site", str(tmp_path), "--pages", "gone.html")
    assert (code, out) == (2, "") and "gone.html" in err and len(err.splitlines()) == 1, err


@needs_browser
def test_it_passes_a_good_page_and_names_every_fault(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "dot.png").write_bytes(PNG)
    (site / "index.html").write_text(page(
        "<h1 id='top'>home</h1><img src='dot.png'><a href='other.html#here'>other</a><a href='#top'>top</a>"
        "<pre>$$ \\frac{a}{b} $$ in a code block is code</pre>"))
    (site / "other.html").write_text(page("<p id='here'>here</p><a href='index.html'>home</a>"))
    (site / "image.html").write_text(page("<img src='missing.png'>"))
    (site / "link.html").write_text(page("<a href='nowhere.html'>x</a><a href='other.html#gone'>y</a>"))
    (site / "tex.html").write_text(page("<p>the bound $$\\log p(x) \\geq \\frac{1}{2}$$</p>"))
    (site / "script.html").write_text(page("<p>x</p>", "<script>undefined_function();</script>"))
    code, out, err = check("--site", str(site), "--screenshots", str(tmp_path / "shots"))
    lines = out.splitlines()
    status = {line.split()[1]: line.split()[0] for line in lines if line.startswith(("ok", "FAIL"))}
    assert status == {"index.html": "ok", "other.html": "ok", "image.html": "FAIL", "link.html": "FAIL",
                      "tex.html": "FAIL", "script.html": "FAIL"}, out + err
    assert code == 1 and "2 passed, 4 failed" in out
    assert "image did not load: missing.png" in out
    assert "nowhere.html (no such page in the site)" in out and "(no #gone on that page)" in out
    assert "raw TeX in the visible text" in out and "undefined_function" in out
    shots = sorted(os.listdir(tmp_path / "shots"))
    assert shots == sorted(f"{name}.png" for name in ("index", "other", "image", "link", "tex", "script"))
    assert all((tmp_path / "shots" / s).read_bytes()[:8] == PNG[:8] for s in shots)
