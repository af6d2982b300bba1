"""Open every page of the built documentation in headless Chromium and fail on visible defects.

    python .ci/check_docs.py SITE_DIR [--screenshots DIR]

Serves SITE_DIR (the output of `mkdocs build`) on 127.0.0.1 from a thread, opens every HTML
page in headless Chromium (Debian's `chromium` and `chromedriver`, driven by Selenium) with
every host name but 127.0.0.1 unresolvable, so the pages are seen as they are offline, and
reports, page by page:

- raw TeX: text outside code blocks and rendered maths that still holds TeX (`$$`, `\\(`,
  `\\[`, `\\frac`, `$\\alpha$`, ...), maths elements (`.arithmatex`) that KaTeX did not render,
  and KaTeX's own error boxes (`.katex-error`);
- broken images (`naturalWidth == 0`);
- broken internal links (a link to a file of the site that does not exist, or to an anchor
  that is not an `id` on the target page);
- JavaScript errors and failed loads (browser console messages of level SEVERE);
- resources (scripts, styles, fonts, images) loaded from anywhere but the site itself.

Exit status 1 and one line per problem if anything is found, else 0. With `--screenshots
DIR`, a full-height screenshot of the key pages (home, getting started, the capability pages,
gallery, benchmarks) is saved to DIR for review.
"""

import argparse
import functools
import http.server
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse


KEY_PAGES = [
    "",
    "getting-started",
    "nde",
    "sde",
    "linsolve",
    "neuralop",
    "dsf",
    "ensemble",
    "gallery",
    "benchmarks",
]

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1280,1000",
    # offline: no name but the local server resolves
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

# TeX that should never be seen as text: display/inline delimiters, common commands, and
# `$...\cmd...$` left unconverted.
TEX_COMMANDS = (
    "frac dfrac sum int prod sqrt mathbb mathrm mathbf mathcal texttt operatorname left right "
    "begin end alpha beta gamma delta epsilon lambda Lambda sigma Phi phi partial nabla cdot "
    "cdots ldots odot otimes le ge leq geq in infty top hat bar tilde"
).split()
TEX_PATTERN = (
    r"\$\$|\\\(|\\\)|\\\[|\\\]"
    + r"|\\("
    + "|".join(TEX_COMMANDS)
    + r")(?![A-Za-z])"
    + r"|\$[^$\s][^$]*\\[A-Za-z]+[^$]*\$"
)

# Runs in the page (arguments[0]: TEX_PATTERN); returns what the checks need. TeX in text
# nodes is looked for outside code, scripts and rendered maths (KaTeX keeps the source in a
# MathML annotation).
PAGE_JS = r"""
const skip = "pre, code, script, style, noscript, textarea, .katex, .katex-display";
const tex = new RegExp(arguments[0]);
const raw = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const el = n.parentElement;
  if (!el || el.closest(skip)) continue;
  const m = n.textContent.match(tex);
  if (m) {
    const i = Math.max(0, m.index - 30);
    raw.push(n.textContent.slice(i, m.index + 40).replace(/\s+/g, " ").trim());
  }
}
const unrendered = [];
for (const el of document.querySelectorAll(".arithmatex")) {
  if (!el.querySelector(".katex") || el.querySelector(".katex-error")) {
    unrendered.push(el.textContent.slice(0, 60).replace(/\s+/g, " ").trim());
  }
}
for (const el of document.querySelectorAll(".katex-error")) {
  if (!el.closest(".arithmatex")) unrendered.push(el.textContent.slice(0, 60));
}
const images = [...document.images].map(img => ({
  src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth,
}));
const links = [...document.querySelectorAll("a[href]")].map(a => a.href);
const ids = [...document.querySelectorAll("[id]")].map(e => e.id)
  .concat([...document.querySelectorAll("a[name]")].map(a => a.name));
const resources = performance.getEntriesByType("resource").map(r => r.name);
const height = Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);
return {raw, unrendered, images, links, ids, resources, height};
"""


def serve(site: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=site)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def site_pages(site: str) -> list[str]:
    """Site-relative URL paths of every HTML page ("" for the home page)."""
    pages = []
    for root, _, files in os.walk(site):
        for f in files:
            if not f.endswith(".html") or f == "404.html":
                continue
            rel = os.path.relpath(os.path.join(root, f), site).replace(os.sep, "/")
            pages.append(rel[: -len("index.html")] if rel.endswith("index.html") else rel)
    return sorted(pages)


def target_file(site: str, path: str) -> str | None:
    """The file the server would send for a site-relative URL path, or None."""
    local = os.path.join(site, urllib.parse.unquote(path).lstrip("/"))
    if path == "" or path.endswith("/"):
        local = os.path.join(local, "index.html")
    return local if os.path.isfile(local) else None


def page_key(path: str) -> str:
    return path[: -len("index.html")] if path.endswith("index.html") else path


def make_driver(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        sys.exit(
            "check_docs: chromium and chromedriver are needed "
            "(Debian: apt-get install -y chromium chromium-driver)"
        )
    opts.binary_location = binary
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))


def check_page(driver, url: str, timeout: float) -> dict:
    driver.get(url)
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        ready = driver.execute_script("return document.readyState") == "complete"
        info = driver.execute_script(PAGE_JS, TEX_PATTERN)
        settled = all(img["complete"] for img in info["images"]) and not info["unrendered"]
        if ready and settled:
            break
        time.sleep(0.25)
    info["log"] = driver.get_log("browser")
    return info


def screenshot(driver, path: str, height: int) -> None:
    """The whole page (up to 7000 px): the window is made as tall as the page."""
    js = "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
    for _ in range(3):  # the layout can grow once the window is taller
        driver.set_window_size(1280, max(800, min(int(height) + 140, 7000)))
        time.sleep(0.3)
        new = driver.execute_script(js)
        if new <= height:
            break
        height = new
    driver.save_screenshot(path)
    driver.set_window_size(1280, 1000)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", help="the built site directory (mkdocs build --site-dir)")
    parser.add_argument("--screenshots", help="save screenshots of the key pages here")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per page")
    args = parser.parse_args(argv)
    site = os.path.abspath(args.site)
    if not os.path.isfile(os.path.join(site, "index.html")):
        sys.exit(f"check_docs: {site} has no index.html (build the site first)")
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)

    server, base = serve(site)
    pages = site_pages(site)
    problems: list[str] = []
    ids: dict[str, set[str]] = {}
    links: list[tuple[str, str]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="check_docs_chromium_") as profile:
        driver = make_driver(profile)
        try:
            for page in pages:
                name = "/" + page
                info = check_page(driver, base + page, args.timeout)
                ids[page] = set(info["ids"])
                for text in info["raw"]:
                    problems.append(f"{name}: raw TeX in the text: {text!r}")
                for text in info["unrendered"]:
                    problems.append(f"{name}: maths not rendered by KaTeX: {text!r}")
                for img in info["images"]:
                    if img["width"] == 0:
                        problems.append(f"{name}: broken image {img['src']}")
                for entry in info["log"]:
                    if entry.get("level") == "SEVERE":
                        problems.append(f"{name}: browser error: {entry.get('message')}")
                for res in info["resources"]:
                    if not res.startswith(base) and not res.startswith(("data:", "blob:")):
                        problems.append(f"{name}: resource from outside the site: {res}")
                links += [(page, href) for href in info["links"]]
                if args.screenshots and page.rstrip("/") in KEY_PAGES:
                    shot = (page.rstrip("/") or "index").replace("/", "_") + ".png"
                    screenshot(driver, os.path.join(args.screenshots, shot), info["height"])
        finally:
            driver.quit()
            server.shutdown()

    seen = set()
    for page, href in links:
        if not href.startswith(base) or (page, href) in seen:
            continue
        seen.add((page, href))
        parsed = urllib.parse.urlsplit(href[len(base) - 1 :])
        path, frag = parsed.path.lstrip("/"), urllib.parse.unquote(parsed.fragment)
        if target_file(site, path) is None:
            problems.append(f"/{page}: broken link {href[len(base) - 1 :]} (no such page)")
        elif frag and page_key(path) in ids and frag not in ids[page_key(path)]:
            problems.append(f"/{page}: broken link {href[len(base) - 1 :]} (no such anchor)")

    print(
        f"check_docs: {len(pages)} pages, {len(seen)} internal links checked in "
        f"{time.perf_counter() - start:.0f} s"
    )
    for p in problems:
        print("  " + p)
    if problems:
        print(f"check_docs: {len(problems)} problem(s)")
        return 1
    print("check_docs: no problems")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
