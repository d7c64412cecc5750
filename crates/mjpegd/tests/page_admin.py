"""The pages as a person uses them, in headless Chromium (playwright, Debian's /usr/bin/chromium).

Run by tests/page_admin.rs, which starts the real mjpegd and passes:
    page_admin.py SCENARIO URL [--config FILE] [--user NAME:PASSWORD]
Scenarios:
    admin    add a camera through the form, see it live on the wall, edit it (a bad value is shown next to
             its field), edit the file's own camera (keys the form does not show are kept), remove the new
             one, and see a hand-edited file refused with a sentence; the config file is checked at each step
    viewer   a user who is not an admin sees no buttons (and an admin on the same server does)
    nojson   the camera page shows state as sentences and tables, never raw JSON
Each wait is for a condition, bounded by a few seconds. Exits non-zero with the reason on failure.
"""

import argparse
import re
import sys
import tomllib

from playwright.sync_api import expect, sync_playwright

STEP_MS = 5000
expect.set_options(timeout=STEP_MS)


def browser(p):
    return p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )


def new_page(b, user):
    kwargs = {}
    if user:
        name, password = user.split(":", 1)
        kwargs["http_credentials"] = {"username": name, "password": password}
    page = b.new_context(**kwargs).new_page()
    page.set_default_timeout(STEP_MS)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    return page


def cameras(config):
    with open(config, "rb") as f:
        return tomllib.load(f).get("cameras", {})


def no_raw_json(page, where):
    text = page.inner_text("body")
    for bad in ['{"', "[object Object]"]:
        assert bad not in text, f"{where}: the page shows {bad!r}: {text}"


def submit_form(page):
    page.click("#camform-submit")


def field_error(page, key):
    return page.locator(f'[data-error-for="{key}"]')


def admin(b, url, config, user):
    page = new_page(b, user)
    page.goto(url)
    add = page.locator('[data-action="add"]')
    expect(add).to_be_visible()
    first = list(cameras(config))[0]
    single = len(cameras(config)) == 1
    if single:
        # The camera page at /: admins can still add a camera, and its own controls are there.
        expect(page.locator("h1")).to_have_text("mjpegd")
        expect(page.locator(f'button[data-action="edit"][data-camera="{first}"]')).to_be_visible()

    # Add "yard" through the form.
    add.click()
    expect(page.locator(".camform-back.open")).to_be_visible()
    page.fill("#cf-name", "yard")
    page.fill("#cf-source", "pattern")
    page.fill("#cf-resolution", "160x120")
    page.fill("#cf-fps", "5")
    page.fill("#cf-other", '# a comment line is skipped\ncapture = "always"\n')
    submit_form(page)
    expect(page.locator(".camform-back.open")).to_have_count(0)
    # / is the wall now, with the new camera live on it.
    expect(page.locator("h1")).to_have_text("mjpegd: all cameras")
    expect(page.locator('.tile button[data-action="edit"][data-camera="yard"]')).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tile img')].some((i) => i.alt === 'yard' && i.naturalWidth === 160)",
        timeout=8000,
    )
    assert cameras(config)["yard"] == {
        "source": "pattern",
        "resolution": "160x120",
        "fps": 5,
        "capture": "always",
    }, cameras(config)

    # Edit it: the form shows its settings; bad values are refused next to their fields.
    page.click('button[data-action="edit"][data-camera="yard"]')
    # (the form opens once the camera's settings have come: until then it holds the last form's values)
    expect(page.locator(".camform-back.open")).to_be_visible()
    expect(page.locator("#cf-name")).to_have_value("yard")
    expect(page.locator("#cf-fps")).to_have_value("5")
    expect(page.locator("#cf-resolution")).to_have_value("160x120")
    expect(page.locator("#cf-other")).to_have_value(re.compile(r'^\s*capture = "always"\s*$'))
    page.fill("#cf-fps", "fast")
    submit_form(page)
    expect(field_error(page, "fps")).not_to_be_empty()
    print("fps error shown:", field_error(page, "fps").inner_text())
    expect(page.locator("#camform-error")).to_be_empty()
    expect(page.locator(".camform-back.open")).to_be_visible()
    page.fill("#cf-fps", "8")
    page.fill("#cf-quality", "500")
    submit_form(page)
    expect(field_error(page, "quality")).not_to_be_empty()
    print("quality error shown:", field_error(page, "quality").inner_text())
    expect(field_error(page, "fps")).to_be_empty()
    assert cameras(config)["yard"]["fps"] == 5, "nothing saved from a refused change"
    page.fill("#cf-quality", "70")
    submit_form(page)
    expect(page.locator(".camform-back.open")).to_have_count(0)
    assert cameras(config)["yard"] == {
        "source": "pattern",
        "resolution": "160x120",
        "fps": 8,
        "quality": 70,
        "capture": "always",
    }, cameras(config)

    # The file's own camera: a change of fps keeps every key and comment the form does not show.
    before = cameras(config)[first]
    page.click(f'button[data-action="edit"][data-camera="{first}"]')
    expect(page.locator(".camform-back.open")).to_be_visible()
    expect(page.locator("#cf-name")).to_have_value(first)
    other = page.input_value("#cf-other")
    assert '{"' not in other, other
    page.fill("#cf-fps", "6")
    submit_form(page)
    expect(page.locator(".camform-back.open")).to_have_count(0)
    after = cameras(config)[first]
    assert after == {**before, "fps": 6}, (before, after)
    with open(config) as f:
        assert "# kept by the page" in f.read(), "a comment in the file survives"

    # Remove "yard".
    page.click('button[data-action="remove"][data-camera="yard"]')
    expect(page.locator("#camform-remove")).to_contain_text("yard")
    submit_form(page)
    expect(page.locator(".camform-back.open")).to_have_count(0)
    expect(page.locator(".tile img[alt='yard']")).to_have_count(0)
    assert "yard" not in cameras(config), cameras(config)

    # A file edited by hand since mjpegd read it: the change is refused with a sentence, not a code.
    with open(config, "a") as f:
        f.write("# edited by hand\n")
    page.click(f'button[data-action="edit"][data-camera="{first}"]')
    expect(page.locator(".camform-back.open")).to_be_visible()
    expect(page.locator("#cf-name")).to_have_value(first)
    page.fill("#cf-fps", "7")
    submit_form(page)
    expect(page.locator("#camform-error")).to_contain_text("changed by hand")
    expect(page.locator("#camform-error")).to_contain_text("Reload the file")
    page.click("#camform-cancel")
    assert cameras(config)[first]["fps"] == 6
    no_raw_json(page, "the wall")
    assert not page.errors, page.errors


def viewer(b, url, config, user, admin_user):
    count = len(cameras(config))
    for who, expect_buttons in [(user, False), (admin_user, True)]:
        page = new_page(b, who)
        with page.expect_response(lambda r: r.url.endswith("/api/cameras")) as answer:
            page.goto(url)
        assert answer.value.ok, answer.value.status
        expect(page.locator(".tile")).to_have_count(count)
        if expect_buttons:
            expect(page.locator('[data-action="add"]')).to_be_visible()
            expect(page.locator('.tile [data-action="edit"]')).to_have_count(count)
        else:
            # The page has read can_write (false) and must have added nothing.
            page.wait_for_timeout(300)
            assert page.locator("button").count() == 0, page.content()
            expect(page.locator("#admin-bar")).to_be_hidden()
            # The camera page too.
            first = list(cameras(config))[0]
            with page.expect_response(lambda r: r.url.endswith("/api/cameras")):
                page.goto(url.rstrip("/") + f"/cams/{first}/")
            expect(page.locator("#thiscam")).to_be_visible()
            page.wait_for_timeout(300)
            assert page.locator("button").count() == 0, page.content()
        assert not page.errors, page.errors


def nojson(b, url):
    page = new_page(b, None)
    for path in ["/", "/cams/default/"]:
        page.goto(url.rstrip("/") + path)
        expect(page.locator("#source")).to_contain_text("Evictions: none.")
        expect(page.locator("#clients")).to_contain_text("frames sent")
        no_raw_json(page, path)
        html = page.inner_html("#source")
        assert "JSON" not in html and '{"' not in html, html
    assert not page.errors, page.errors


def main():
    a = argparse.ArgumentParser()
    a.add_argument("scenario")
    a.add_argument("url")
    a.add_argument("--config")
    a.add_argument("--user")
    a.add_argument("--admin-user")
    args = a.parse_args()
    with sync_playwright() as p:
        b = browser(p)
        try:
            if args.scenario == "admin":
                admin(b, args.url, args.config, args.user)
            elif args.scenario == "viewer":
                viewer(b, args.url, args.config, args.user, args.admin_user)
            elif args.scenario == "nojson":
                nojson(b, args.url)
            else:
                sys.exit(f"no scenario {args.scenario}")
        finally:
            b.close()
    print("PAGE OK")


if __name__ == "__main__":
    main()
