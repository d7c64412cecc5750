"""A camera's recordings on its page, as a person uses them, in headless Chromium (playwright, Debian's
/usr/bin/chromium).

Run by tests/page_recordings.rs, which starts the real mjpegd recording the test pattern and passes:
    page_recordings.py PAGE_URL SEGMENT FIRST_COUNTER
(or `page_recordings.py kinds PAGE_URL EVENT LAPSE`: see kinds() below)
SEGMENT is a finished segment's file name, FIRST_COUNTER the pattern's frame counter of its first frame
(10 frames a second). The script clicks the timeline at 4 s into SEGMENT and checks that the picture shown
is the pattern's frame of that time (its counter, read from the picture's barcode), then clicks the scrub bar
at a fifth of the segment and checks the frame again; the item's download link serves the file; its play
link plays it from its first frame, and stop ends the replay. Each wait is
for a condition, bounded by a few seconds. Exits non-zero with the reason on failure.
"""

import sys
import time
from urllib.parse import urljoin

from playwright.sync_api import expect, sync_playwright

STEP_MS = 8000
expect.set_options(timeout=STEP_MS)

# The pattern's frame counter from the picture shown: 24 bits across the top band (see
# source/pattern.rs, read_barcode), sampled from the <img> drawn on a canvas.
READ_COUNTER = """() => {
  const img = document.getElementById("rec-img");
  if (!img.naturalWidth) return -1;
  const w = img.naturalWidth, h = img.naturalHeight;
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, w, h).data;
  const y = (Math.max(4, Math.floor(h / 60)) & ~1) / 2;
  let n = 0;
  for (let i = 0; i < 24; i++) {
    const x = Math.floor((2 * i + 1) * w / 48);
    const o = (y * w + x) * 4;
    const l = 0.299 * d[o] + 0.587 * d[o + 1] + 0.114 * d[o + 2];
    n = n * 2 + (l > 128 ? 1 : 0);
  }
  return n;
}"""


def start_asked(page):
    src = page.get_attribute("#rec-img", "src") or ""
    q = src.split("?", 1)[1] if "?" in src else ""
    params = dict(p.split("=", 1) for p in q.split("&") if "=" in p)
    return src, float(params.get("start", "nan"))


def shows_frame_of(page, expected, what):
    """Waits until the picture shows a frame from `expected` to a few frames later (it plays on)."""
    deadline = time.time() + STEP_MS / 1000
    seen = []
    while time.time() < deadline:
        n = page.evaluate(READ_COUNTER)
        seen.append(n)
        # One frame earlier when a late capture moved it across the time asked for.
        if expected - 1 <= n <= expected + 5:
            print(f"{what}: frame {n} shown, {expected} asked")
            return
        time.sleep(0.03)
    raise SystemExit(f"{what}: expected frame {expected}, the picture showed {sorted(set(seen))[:20]}")


def on_page(url, check):
    """Opens `url` in headless Chromium, waits for the recordings section and runs `check(page)`; fails on
    any page error; prints PAGE OK when all passed."""
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        try:
            page = b.new_page()
            page.set_default_timeout(STEP_MS)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            expect(page.locator("#rec")).to_be_visible()
            check(page)
            if errors:
                raise SystemExit(f"page errors: {errors}")
            print("PAGE OK")
        finally:
            b.close()


def main():
    url, segment, first = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def check(page):
        expect(page.locator("#rec-timeline .item")).to_have_count(2)
        expect(page.locator("#rec-list")).to_contain_text("segment")

        # Half speed: each frame stays 0.2 s on screen, so a busy machine still sees the first ones.
        page.select_option("#rec-speed", "0.5")
        # Click the timeline at 4 s into the segment.
        page.locator("#rec-timeline").scroll_into_view_if_needed()
        x, y = page.evaluate("""(name) => {
          const items = window.mjpegdRecordings.items();
          const it = items.find((i) => i.name === name);
          const ms = (t) => Date.parse(t);
          const lo = Math.min(...items.map((i) => ms(i.start))), hi = Math.max(...items.map((i) => ms(i.end)));
          const box = document.getElementById("rec-timeline").getBoundingClientRect();
          const t = ms(it.start) + 4000;
          return [box.left + (t - lo) / (hi - lo) * box.width, box.top + box.height / 2];
        }""", segment)
        page.mouse.click(x, y)
        expect(page.locator("#rec-player")).to_be_visible()
        src, start = start_asked(page)
        if segment not in src or "speed=0.5" not in src or not 3.7 <= start <= 4.3:
            raise SystemExit(f"the timeline click played {src}")
        shows_frame_of(page, first + int(start * 10 + 1e-6), f"timeline at {start:.3f} s")

        # The scrub bar, clicked at a fifth of its width: back to about 1.2 s.
        page.locator("#rec-scrub").scroll_into_view_if_needed()
        box = page.locator("#rec-scrub").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)
        deadline = time.time() + STEP_MS / 1000
        while time.time() < deadline:
            src, start = start_asked(page)
            if start < 3:
                break
            time.sleep(0.05)
        if not 0.5 <= start <= 2.0:
            raise SystemExit(f"the scrub bar played {src}")
        shows_frame_of(page, first + int(start * 10 + 1e-6), f"scrubbed to {start:.3f} s")
        expect(page.locator("#rec-at")).to_contain_text("segment")

        # Each item has a download link that serves its file.
        link = page.locator(f'#rec-list a[href="/recordings/{segment}"]')
        expect(link).to_have_count(1)
        r = page.request.get(urljoin(page.url, link.get_attribute("href")))
        if r.status != 200 or r.headers.get("content-type") != "video/x-matroska":
            raise SystemExit(f"download: {r.status} {r.headers}")

        # The list's play link plays the item from its start; stop ends the replay.
        row = page.locator("#rec-list tr", has=page.locator(f'a[href="/recordings/{segment}"]'))
        row.locator("a.rec-play").click()
        deadline = time.time() + STEP_MS / 1000
        while time.time() < deadline and start_asked(page)[1] != 0.0:
            time.sleep(0.05)
        src, start = start_asked(page)
        if segment not in src or start != 0.0:
            raise SystemExit(f"play from the list played {src}")
        shows_frame_of(page, first, "played from the list")
        page.locator("#rec-stop").click()
        expect(page.locator("#rec-player")).to_be_hidden()
        if page.get_attribute("#rec-img", "src") is not None:
            raise SystemExit("stop left the replay playing")
    on_page(url, check)


def kinds(url, event, lapse):
    """`page_recordings.py kinds PAGE_URL EVENT LAPSE`: the event (labelled `doorbell`) and the timelapse
    segment are shown as what they are, on the timeline and in the list; the timelapse plays as a movie
    (rate=30, not its capture pace) and its picture shows."""
    def check(page):
        # On the timeline: the event in its own colour and lane, with its label; the timelapse in its own.
        expect(page.locator("#rec-timeline .item.event")).to_have_count(1)
        expect(page.locator("#rec-timeline .item.event")).to_have_text("doorbell")
        expect(page.locator("#rec-timeline .item.timelapse")).to_have_count(1)
        colours = page.evaluate("""() => [".item.event", ".item.timelapse"].map((c) =>
          getComputedStyle(document.querySelector("#rec-timeline " + c)).backgroundColor)""")
        if colours[0] == colours[1]:
            raise SystemExit(f"event and timelapse look the same: {colours}")
        # In the list: what each is, with the event's label.
        ev_row = page.locator("#rec-list tr", has=page.locator(f'a[href="/recordings/{event}"]'))
        expect(ev_row).to_contain_text("event doorbell")
        lapse_row = page.locator("#rec-list tr", has=page.locator(f'a[href="/recordings/{lapse}"]'))
        expect(lapse_row).to_contain_text("timelapse")
        # The event plays at its recorded pace; the timelapse as a movie.
        ev_row.locator("a.rec-play").click()
        src = page.get_attribute("#rec-img", "src") or ""
        if event not in src or "speed=1" not in src:
            raise SystemExit(f"the event played {src}")
        lapse_row.locator("a.rec-play").click()
        src = page.get_attribute("#rec-img", "src") or ""
        if lapse not in src or "rate=30" not in src or "speed=" in src:
            raise SystemExit(f"the timelapse played {src}")
        page.wait_for_function(
            "() => document.getElementById('rec-img').naturalWidth > 0", timeout=STEP_MS)
        expect(page.locator("#rec-at")).to_contain_text("timelapse")
    on_page(url, check)


if sys.argv[1] == "kinds":
    kinds(*sys.argv[2:5])
else:
    main()
