#!/usr/bin/env python3
"""web/test_web.py — the page in a real browser (Debian's headless Chromium, driven with
python3-selenium), checked against the native float64 library.

For a GRU and an LSTM step with inputs typed into the page's controls, the test clicks
"step backward" through the whole tape and checks that
  - every value and gradient the page shows (the full-precision numbers in the boxes' and the
    step panel's data attributes) equals what web/tg_web_native, built against libtapegrad64,
    prints for the same inputs, to 1e-9;
  - the walk visits the nodes in the tape's reverse order, and the numbers flowing out of each
    node are the native backward's after that node;
then trains a GRU on the vanishing-gradient task in the page and checks that the loss falls
(and that the page's losses are the native library's), and takes screenshots at a laptop's and
a phone's size (docs/img/web_laptop.png, web_phone.png, web_training.png).

    python3 web/test_web.py --native build/test/web/tg_web_native [--source .] [--screenshots DIR]

It builds web/tapegrad.js first (scripts/build-web.sh: nothing to do when up to date). Without
emscripten, Chromium, its driver or selenium it says what is missing and exits 77 (a skip for
meson) — or 1 when TG_WEB_REQUIRED=1 (scripts/test.sh sets it: there they are installed).
"""
import argparse
import base64
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TOL = 1e-9


def missing(why):
    """Chromium, its driver, selenium or emscripten is not there: say so, loudly."""
    required = os.environ.get("TG_WEB_REQUIRED") == "1"
    msg = f"web test {'FAILED' if required else 'SKIPPED'}: {why}\n" \
          "install them with: sh scripts/install-deps.sh --web"
    print(msg)
    print(msg, file=sys.stderr)
    sys.exit(1 if required else 77)


try:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
except ImportError:
    # Debian's python3-selenium is in the system Python; a python3 of one's own (pyenv, a
    # venv) earlier on PATH does not see it.
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    missing("python3-selenium is not installed")


class Checks:
    def __init__(self):
        self.passed = self.failed = 0
        self.max_diff = 0.0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", what)

    def close(self, web, native, what):
        """Two lists of numbers (or None) equal to TOL; records the largest difference."""
        if web is None or native is None:
            self.ok(web is None and native is None, f"{what}: web {web} native {native}")
            return
        if len(web) != len(native):
            self.ok(False, f"{what}: {len(web)} numbers on the page, {len(native)} native")
            return
        diff = max((abs(a - b) for a, b in zip(web, native)), default=0.0)
        self.max_diff = max(self.max_diff, diff)
        self.ok(diff <= TOL, f"{what}: |web - native| = {diff:g}\n  web    {web}\n  native {native}")


def native_cell(native, cell, seed, inputs):
    out = subprocess.run([native, "cell", cell, str(seed)] + [repr(x) for x in inputs],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def set_input(driver, elem_id, value):
    """Types a number into one of the page's number inputs, as the page sees a user do it."""
    driver.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}));", elem_id, str(value))


def shown_numbers(driver):
    """tensor id -> (value, grad) as the graph's boxes show them (one round trip)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#graph text[data-tensor]')].map((e) => "
        "[Number(e.dataset.tensor), e.dataset.value ?? null, e.dataset.grad ?? null]);")
    values, grads = {}, {}
    for t, v, g in rows:
        if v is not None:
            values[t] = json.loads(v)
        if g is not None:
            grads[t] = json.loads(g)
    return values, grads


def step_panel(driver):
    """What the step panel and the graph show of the node just walked (one round trip)."""
    return driver.execute_script("""
        const p = document.getElementById('step-panel');
        const vecs = (sel) => [...p.querySelectorAll(sel)].map((e) => JSON.parse(e.dataset.v));
        return {node: Number(p.dataset.node), rule: p.querySelector('.rule').textContent,
                current: [...document.querySelectorAll('#graph g.current')].map(
                    (g) => Number(g.dataset.node)),
                flow_in: vecs('tr.flow-in td:last-child .vec'),
                flow_out: vecs('tr.flow-out td:last-child .vec'),
                more: !document.getElementById('btn-step').disabled};""")


def check_cell(driver, checks, native, cell, seed, x, h, c, v):
    driver.find_element(By.ID, "tab-" + cell).click()
    for key, vals in (("x", x), ("h", h), ("c", c), ("v", v)):
        if key == "c" and cell != "lstm":
            continue
        for i, val in enumerate(vals):
            set_input(driver, f"in-{key}{i}", val)
    set_input(driver, "seed", seed)
    ref = native_cell(native, cell, seed, x + h + (c if cell == "lstm" else [0, 0, 0]) + v)
    n = len(ref["nodes"])

    # forward only: the values, no gradients yet
    driver.find_element(By.ID, "btn-reset").click()
    values, grads = shown_numbers(driver)
    ops = [tuple(x) for x in driver.execute_script(
        "return [...document.querySelectorAll('#graph g[data-node]')].map((g) => "
        "[Number(g.dataset.node), g.querySelector('text.title').textContent.split(' ')[1]]);")]
    checks.ok(sorted(ops) == [(i, node["op"]) for i, node in enumerate(ref["nodes"])],
              f"{cell}: the page's tape {sorted(ops)} is the native one")
    checks.ok(set(values) == set(range(len(ref["tensors"]))),
              f"{cell}: every tensor of the tape is shown")
    for t, val in values.items():
        checks.close(val, ref["tensors"][t]["value"], f"{cell} value of tensor {t}")
    checks.ok(all(g is None for g in grads.values()), f"{cell}: no gradient before backward")
    loss = json.loads(driver.find_element(By.ID, "loss").get_attribute("data-v"))
    checks.close(loss, [ref["loss"]], f"{cell} loss")

    # step backward, one node at a time, to the end
    order = []
    step_btn = driver.find_element(By.ID, "btn-step")
    more = True
    while more and len(order) <= n:
        step_btn.click()
        shown = step_panel(driver)
        more = shown["more"]
        i = shown["node"]
        order.append(i)
        node = ref["nodes"][i]
        checks.ok(shown["current"] == [i], f"{cell}: node #{i} is highlighted")
        checks.ok(shown["rule"].strip() != "", f"{cell}: node #{i} shows its rule")
        for k, t in enumerate(node["out"]):
            checks.close(shown["flow_in"][k], ref["tensors"][t]["grad"], f"{cell} #{i}: gradient in")
        want = [g for g, t in zip(node["in_grad_after"], node["in"]) if t >= 0 and g is not None]
        checks.ok(len(shown["flow_out"]) == len(want), f"{cell} #{i}: {len(want)} gradients out")
        for k, g in enumerate(want[:len(shown["flow_out"])]):
            checks.close(shown["flow_out"][k], g, f"{cell} #{i}: gradient out {k}")
    checks.ok(order == list(range(n - 1, -1, -1)) and order == ref["backward_order"],
              f"{cell}: the walk {order} is the tape's reverse order")

    # after the whole backward: every gradient the boxes show is the native one
    values, grads = shown_numbers(driver)
    for t, g in grads.items():
        checks.close(g, ref["tensors"][t]["grad"], f"{cell} gradient of tensor {t}")
    named = {ref["tensors"][t]["name"] for t in values if ref["tensors"][t]["name"]}
    gates = {"r", "z", "n", "h"} if cell == "gru" else {"i", "f", "g", "o", "c", "h"}
    checks.ok(gates <= named, f"{cell}: the gates {sorted(gates)} are named on the page")


def check_training(driver, checks, native):
    T, hidden, steps, seed, lr = 5, 16, 200, 1, 0.01
    driver.find_element(By.CSS_SELECTOR, "#model option[value='1']").click()  # GRU
    for elem_id, val in (("train-T", T), ("train-hidden", hidden), ("train-steps", steps),
                         ("train-seed", seed), ("train-lr", lr)):
        set_input(driver, elem_id, val)
    # every step count the status line shows, as the page updates it between chunks
    driver.execute_script(
        "window.stepsSeen = []; new MutationObserver(() => window.stepsSeen.push("
        "document.getElementById('train-status').dataset.step)).observe("
        "document.getElementById('train-status'), {attributes: true});")
    start = time.time()
    driver.find_element(By.ID, "btn-train").click()
    status = driver.find_element(By.ID, "train-status")
    while status.get_attribute("data-running") != "false" and time.time() - start < 240:
        time.sleep(0.05)
    seen = set(driver.execute_script("return window.stepsSeen;"))
    elapsed = time.time() - start
    losses = json.loads(status.get_attribute("data-losses"))
    checks.ok(len(losses) == steps, f"training ran {len(losses)} of {steps} steps")
    checks.ok(len(seen) >= steps // 10, f"the page showed every chunk of 10 steps ({len(seen)} "
              "different steps seen): it stays live while training")
    first = sum(losses[:20]) / 20
    last = sum(losses[-20:]) / 20
    checks.ok(last < first - 0.2, f"training lowers the loss: {first:.4f} -> {last:.4f}")
    grad = json.loads(driver.find_element(By.ID, "chart-grad").get_attribute("data-grad-norm"))
    checks.ok(len(grad) == T and all(g > 0 for g in grad), f"|dL/dh_t| for every t: {grad}")
    # the same run natively: the page's losses are the library's (float64 on both sides;
    # the C libraries' tanh and exp may differ in the last bit, so a looser bound)
    out = subprocess.run([native, "train", "gru", str(T), str(hidden), str(seed), str(lr), "10",
                          str(steps // 10)], check=True, capture_output=True, text=True).stdout
    ref = [x for line in out.splitlines() for x in json.loads(line)["losses"]]
    diff = max(abs(a - b) for a, b in zip(losses, ref))
    checks.ok(diff < 1e-6, f"training losses, web against native: max diff {diff:g}")
    print(f"training: {steps} steps in {elapsed:.1f} s in the page, mean loss of the first 20 "
          f"{first:.4f}, of the last 20 {last:.4f}, held-out accuracy "
          f"{float(status.get_attribute('data-accuracy')):.3f}; web vs native losses max "
          f"|diff| {diff:.3g}")


def pixels_differing(driver, png_a, png_b):
    """The fraction of pixels that differ between two PNGs, as the browser decodes them."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const load = (b64) => new Promise((ok, bad) => {
            const im = new Image(); im.onload = () => ok(im); im.onerror = bad;
            im.src = 'data:image/png;base64,' + b64; });
        Promise.all([load(arguments[0]), load(arguments[1])]).then(([a, b]) => {
            if (a.width !== b.width || a.height !== b.height) return done(1);
            const px = (im) => { const c = document.createElement('canvas');
                c.width = im.width; c.height = im.height; const g = c.getContext('2d');
                g.drawImage(im, 0, 0); return g.getImageData(0, 0, c.width, c.height).data; };
            const p = px(a), q = px(b);
            let n = 0;
            for (let i = 0; i < p.length; i += 4)
                if (p[i] !== q[i] || p[i + 1] !== q[i + 1] || p[i + 2] !== q[i + 2]) n++;
            done(n / (p.length / 4));
        }, () => done(1));""", base64.b64encode(png_a).decode(), base64.b64encode(png_b).decode())


def screenshot(driver, path, width, height, anchor):
    """Writes the screenshot, unless the one already there shows the same picture (PNG bytes
    differ between runs even when no pixel does): the pictures in docs/img change only when
    the page does."""
    driver.set_window_size(width, height)
    time.sleep(0.3)
    driver.execute_script("document.getElementById(arguments[0]).scrollIntoView();", anchor)
    time.sleep(0.2)
    png = driver.get_screenshot_as_png()
    if os.path.exists(path):
        with open(path, "rb") as f:
            old = f.read()
        if pixels_differing(driver, old, png) < 1e-4:
            print("unchanged", path)
            return
    with open(path, "wb") as f:
        f.write(png)
    print("wrote", path)



def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, what, proc):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not open 127.0.0.1:{port}")


class Browser:
    """Headless Chromium started here and driven through chromedriver, both on 127.0.0.1:
    selenium's own launcher reaches both as "localhost", which a bare container without an
    /etc/hosts cannot resolve."""

    def __init__(self, chromium, chromedriver):
        self.profile = tempfile.mkdtemp(prefix="tg_web_chromium.")
        cdp, wd = free_port(), free_port()
        self.procs = []
        self.driver = None
        try:
            self.procs.append(subprocess.Popen(
                [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--window-size=1280,800", "--hide-scrollbars",
                 "--force-device-scale-factor=1", "--no-first-run",
                 "--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={cdp}",
                 f"--user-data-dir={self.profile}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for_port(cdp, "chromium", self.procs[-1])
            self.procs.append(subprocess.Popen([chromedriver, f"--port={wd}"],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
            wait_for_port(wd, "chromedriver", self.procs[-1])
            opts = webdriver.ChromeOptions()
            opts.debugger_address = f"127.0.0.1:{cdp}"
            opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
            self.driver = webdriver.Remote(command_executor=f"http://127.0.0.1:{wd}",
                                           options=opts)
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.driver:
            self.driver.quit()
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--native", required=True, help="web/tg_web_native, built against tapegrad64")
    ap.add_argument("--source", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--screenshots", help="folder for the screenshots (default: SOURCE/docs/img)")
    args = ap.parse_args()
    src = os.path.abspath(args.source)
    shots = args.screenshots or os.path.join(src, "docs", "img")

    t0 = time.time()
    build = subprocess.run(["sh", os.path.join(src, "scripts", "build-web.sh")], cwd=src)
    if build.returncode == 77:
        missing("emcc (Debian's emscripten) is not installed, so web/tapegrad.js cannot be built")
    if build.returncode != 0:
        print("FAIL: scripts/build-web.sh failed")
        return 1
    t_build = time.time() - t0
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not chromium:
        missing("Debian's chromium is not installed")
    if not os.path.exists(chromedriver):
        missing("Debian's chromium-driver is not installed")

    browser = Browser(chromium, chromedriver)
    driver = browser.driver
    checks = Checks()
    try:
        driver.get("file://" + os.path.join(src, "web", "index.html"))  # from disk, no server
        for _ in range(100):
            if driver.find_element(By.ID, "status").get_attribute("data-ready") == "true":
                break
            time.sleep(0.1)
        checks.ok(driver.find_element(By.ID, "status").get_attribute("data-ready") == "true",
                  "the page loaded tapegrad: " + driver.find_element(By.ID, "status").text)
        check_cell(driver, checks, args.native, "gru", 7, [0.37, -1.25], [0.6, -0.45, 0.05],
                   None, [1.5, -0.7, 0.25])
        check_cell(driver, checks, args.native, "lstm", 3, [-0.8, 0.9], [0.2, 0.7, -0.3],
                   [-0.8, 0.3, 1.1], [1, -2, 0.5])
        check_cell(driver, checks, args.native, "gru", 0, [0.5, -1], [0.1, -0.2, 0.3], None,
                   [1, -1, 0.5])

        # the pictures: a GRU step half-way through its backward
        os.makedirs(shots, exist_ok=True)
        driver.find_element(By.ID, "btn-reset").click()
        for _ in range(6):
            driver.find_element(By.ID, "btn-step").click()
        screenshot(driver, os.path.join(shots, "web_laptop.png"), 1280, 960, "cell-section")
        screenshot(driver, os.path.join(shots, "web_phone.png"), 390, 844, "toolbar")
        driver.set_window_size(1280, 800)
        check_training(driver, checks, args.native)
        screenshot(driver, os.path.join(shots, "web_training.png"), 1280, 720, "vanish-section")
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        checks.ok(not errors, f"no errors in the browser's console: {errors}")
    finally:
        browser.close()
    print(f"max |web - native| over every value and gradient shown: {checks.max_diff:.3g} "
          f"(bound {TOL:g}); build {t_build:.1f} s, total {time.time() - t0:.1f} s")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
