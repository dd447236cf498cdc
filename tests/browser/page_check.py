#!/usr/bin/env python3
"""Opens one HTML page in Debian's headless Chromium through Selenium and chromedriver, and
prints what the browser saw as one JSON object on stdout:

  svgs      [[width, height], ...] of every <svg> as laid out
  series    [{"points": n, "w": px, "h": px}, ...] of every plotted line (class "series")
  console   every browser console entry (errors, CSP refusals, failed loads)
  requests  every URL the page asked the network stack for (the page itself included)

Used by tests/tests/loadgen.rs, which makes the assertions. Usage: page_check.py PAGE.html
Environment: LOADGEN_CHROMIUM (default /usr/bin/chromium), LOADGEN_CHROMEDRIVER
(default /usr/bin/chromedriver).
"""
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SERIES = """
return Array.from(document.querySelectorAll('svg .series')).map(e => {
  const b = e.getBBox();
  const pts = (e.getAttribute('points') || '').trim().split(/\\s+/).filter(x => x).length;
  return {points: pts, w: b.width, h: b.height};
});"""
SVGS = """
return Array.from(document.querySelectorAll('svg')).map(s => {
  const r = s.getBoundingClientRect();
  return [r.width, r.height];
});"""


def main():
    page = os.path.abspath(sys.argv[1])
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("LOADGEN_CHROMIUM", "/usr/bin/chromium")
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--disable-background-networking", "--disable-extensions"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver_path = os.environ.get("LOADGEN_CHROMEDRIVER", "/usr/bin/chromedriver")
    d = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        url = "file://" + page
        d.get(url)
        out = {
            "url": url,
            "title": d.title,
            "svgs": d.execute_script(SVGS),
            "series": d.execute_script(SERIES),
            "console": d.get_log("browser"),
            "requests": [],
        }
        for e in d.get_log("performance"):
            m = json.loads(e["message"])["message"]
            if m.get("method") == "Network.requestWillBeSent":
                out["requests"].append(m["params"]["request"]["url"])
        print(json.dumps(out))
    finally:
        d.quit()


if __name__ == "__main__":
    main()
