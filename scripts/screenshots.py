#!/usr/bin/env python3
"""Make the README's screenshots from a real run: `make screenshots`.

The real pipeline, small, through the `snapid` command a user runs: `snapid demo --no-serve` (generate pill
photos, import, inspect, train the classifier and the pill detector, evaluate, export), `snapid report` and
`snapid data inspect --html`; then `snapid serve` on a free 127.0.0.1 port, and Debian's Chromium driven by
Playwright (no browser download) takes the pictures:

  identify-warning.png     the identification page: a photo of two pills that must not be taken together,
                           each pill named with its card, and the warning above them (English)
  identify-warning-ko.png  the same answer in Korean
  phone-qr.png             the QR phone hand-off panel
  dashboard-runs.png       the dashboard's list of runs (the demo's classifier and detector, and a second
                           classifier on one backbone, mobilenet_v2, trained for the picture)
  dashboard-run.png        one run on the dashboard: its training curves
  report-eval.png          the evaluation report (`snapid report RUN --out report.html`): headline figures
                           and training curves
  report-eval-charts.png   the same report further down: the confusion matrix and the calibration charts
  report-inspect.png       the data inspection report (`snapid data inspect NAME --html inspect.html`)

Each PNG is at most --width pixels wide and optimised with Pillow to stay under --max-kb. The browser may
reach only 127.0.0.1 and file:// (the reports); everything else is refused. The server is stopped with
SIGTERM at the end, and a temporary workspace is removed. About 5 minutes on 2 CPU cores, most of it
training the pill detector.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
DATASET = "pills-demo"  # the name `snapid demo` imports its photos under
SECOND_MODEL = "mobilenet_v2"
SECOND_RUN = f"{DATASET}-{SECOND_MODEL}"
CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 60_000  # a first answer loads the models: allow for a busy machine
READY_WITHIN_S = 120
IDENTIFY_HEIGHT = 1500  # image px of the answer page: the photo, the warning and the first answers


class Failed(Exception):
    """A step failed: the message says which and why."""


def log(message: str) -> None:
    print(f"[screenshots] {message}", flush=True)


def snapid_command() -> list[str]:
    """The `snapid` script beside this Python (the virtual environment's), else `python -m snapid`."""
    script = Path(sys.executable).with_name("snapid")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "snapid"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the pipeline, through the CLI ---------------------------------------------------------------------------

def run_step(what: str, args: list[str], env: dict[str, str], logs: Path) -> str:
    """Run `snapid ARGS` to the end with its output in logs/; raise Failed with the tail when it fails."""
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{args[0]}-{len(list(logs.iterdir()))}.log"
    log(f"{what}: snapid {' '.join(args)}")
    started = time.monotonic()
    with open(path, "wb") as out:
        code = subprocess.call(snapid_command() + args, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env, cwd=REPO)
    text = path.read_text(errors="replace")
    if code != 0:
        raise Failed(f"{what} failed (`snapid {' '.join(args)}` exited with {code}); its output ends:\n{text[-3000:]}")
    log(f"{what}: done in {time.monotonic() - started:.0f} s")
    return text


def demo_bundle(home: Path) -> Path:
    """The bundle `snapid demo` exported (the newest, if there are several)."""
    bundles = sorted((p for p in (home / "bundles").glob("*") if (p / "manifest.json").is_file()),
                     key=lambda p: p.stat().st_mtime)
    if not bundles:
        raise Failed(f"no exported bundle under {home / 'bundles'}: did `snapid demo` finish?")
    return bundles[-1]


def pipeline(home: Path, env: dict[str, str], args: argparse.Namespace) -> tuple[Path, str]:
    """Generate, train, evaluate and export the demo; returns (bundle, the classifier run's name)."""
    logs = home / "screenshot-logs"
    if not args.reuse:
        run_step("the demo pipeline (generate, train, evaluate, train the detector, export)",
                 ["demo", "--no-serve", "--per-class", str(args.per_class), "--multi", str(args.multi),
                  "--detector-epochs", str(args.detector_epochs)], env, logs)
    bundle = demo_bundle(home)
    run = json.loads((bundle / "manifest.json").read_text()).get("run")
    if not run:
        raise Failed(f"{bundle / 'manifest.json'} names no run")
    if not (home / "runs" / SECOND_RUN).is_dir():
        # a second classifier (one backbone instead of the demo's two), so the dashboard lists runs to compare;
        # the demo's recipe: pill crops at 160 px (the crops `snapid demo` prepared)
        config = home / "second-run.yaml"
        config.write_text("size: 160\ncrop: boxes\npad: 0.15\n")
        run_step("a second classifier for the dashboard",
                 ["train", DATASET, "--model", SECOND_MODEL, "--config", str(config), "--name", SECOND_RUN], env, logs)
    reports = home / "reports"
    run_step("the evaluation report", ["report", run, "--out", str(reports / "eval-report.html")], env, logs)
    run_step("the data inspection report", ["data", "inspect", DATASET, "--html", str(reports / "inspect-report.html")],
             env, logs)
    return bundle, run


def together_photos(home: Path) -> list[Path]:
    photos = sorted((home / "demo-data" / "try").glob("*_together.jpg"))
    if not photos:
        raise Failed(f"the demo wrote no photo of an interacting pair in {home / 'demo-data' / 'try'}")
    return photos


# --- the server -----------------------------------------------------------------------------------------------

class Server:
    """`snapid serve BUNDLE` in its own process on 127.0.0.1:PORT."""

    def __init__(self, bundle: Path, env: dict[str, str], logs: Path, phone_url: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        logs.mkdir(parents=True, exist_ok=True)
        self.log = logs / "serve.log"
        command = snapid_command() + ["serve", str(bundle), "--host", "127.0.0.1", "--port", str(self.port)]
        if phone_url:
            command += ["--public-url", phone_url]
        log(f"serving: {' '.join(command[1:])}")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=REPO)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            code = self.process.poll()
            if code is not None:
                raise Failed(f"`snapid serve` exited with {code} before it was ready; its output ends:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz/ready", timeout=2) as answer:
                    if answer.status == 200:
                        log(f"server ready at {self.base}")
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise Failed(f"{self.base}/healthz/ready not ready after {READY_WITHIN_S} s; the output "
                             f"ends:\n{self.tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log("the server did not stop within 30 s of SIGTERM: killing it")
                self.process.kill()
                self.process.wait()
        log(f"server stopped (exit status {self.process.returncode})")

    def predict(self, photo: Path) -> dict:
        """POST one photo to /api/v1/predict (English), as the page does."""
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{photo.name}\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(f"{self.base}/api/v1/predict?lang=en", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.load(answer)


def overlaps(objects: list[dict], iou: float = 0.3) -> int:
    """Pairs of boxes that overlap by more than IOU: a pill found twice makes a messy picture."""
    def area(b):
        return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])

    count = 0
    for i, a in enumerate(objects):
        for b in objects[i + 1:]:
            if a.get("photo") != b.get("photo"):
                continue
            x, y = a["box"], b["box"]
            inter = area((max(x[0], y[0]), max(x[1], y[1]), min(x[2], y[2]), min(x[3], y[3])))
            union = area(x) + area(y) - inter
            count += union > 0 and inter / union > iou
    return count


def warning_photo(server: Server, photos: list[Path]) -> Path:
    """A photo of an interacting pair that comes back with both pills named and their warning: of those,
    the one with the fewest overlapping boxes, then the fewest other pills (the clearest picture)."""
    good, seen = [], []
    for photo in photos:
        pair = sorted(photo.stem.removesuffix("_together").split("+"))
        answer = server.predict(photo)
        objects = answer.get("objects") or []
        named = {o["predictions"][0]["id"] for o in objects if o.get("predictions")}
        if set(pair) <= named and any(sorted(w["classes"]) == pair for w in answer.get("warnings", [])):
            good.append(((overlaps(objects), len(objects)), photo))
        seen.append(f"{photo.name}: named {sorted(named)}, {len(answer.get('warnings', []))} warning(s)")
    if not good:
        raise Failed("no photo of an interacting pair came back with both pills named and the warning "
                     "(train longer: --detector-epochs, --per-class):\n  " + "\n  ".join(seen))
    (clutter, count), photo = min(good, key=lambda item: item[0])
    log(f"{photo.name}: both pills named, with the warning ({count} pills found, {clutter} overlapping pairs of boxes; "
        f"{len(good)} of {len(photos)} photos warned)")
    return photo


# --- the browser ----------------------------------------------------------------------------------------------

class Browser:
    """Headless Chromium through Playwright; every page may reach only 127.0.0.1 and file://."""

    def __init__(self, chromium: Path, width: int, height: int, zoom: float):
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise Failed("Playwright is not installed: `make install` (or pip install -e '.[dev]')") from None
        if not chromium.exists():
            raise Failed(f"{chromium} not found: install Debian's chromium (apt-get install chromium) "
                         "or give --chromium")
        # CSS pixels: WIDTH image pixels at ZOOM device pixels per CSS pixel (bigger text in a README)
        self.width, self.height, self.zoom = round(width / zoom), round(height / zoom), zoom
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=str(chromium),
                                                             args=["--no-sandbox", "--disable-gpu"])
        except Exception as error:
            self._playwright.stop()
            raise Failed(f"Chromium ({chromium}) did not start: {error}") from error
        self.errors: list[str] = []

    def page(self, locale: str = "en-US", zoom: float | None = None):
        """A page in a new context; ZOOM (default the browser's) keeps the image width and changes the layout's."""
        zoom = zoom or self.zoom
        viewport = {"width": round(self.width * self.zoom / zoom), "height": round(self.height * self.zoom / zoom)}
        context = self._browser.new_context(locale=locale, viewport=viewport, device_scale_factor=zoom,
                                            color_scheme="light")
        context.route("**/*", self._only_local)
        page = context.new_page()
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"{page.url}: {m.text}"))
        return page

    @staticmethod
    def _only_local(route):
        url = urlsplit(route.request.url)
        if url.scheme in ("file", "data", "blob") or url.hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    def close(self) -> None:
        self._browser.close()
        self._playwright.stop()


def until(page, expression: str, what: str, timeout_ms: int = WAIT_MS) -> None:
    """Poll a JS expression from outside the page (the page's CSP forbids eval, which wait_for_function needs)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise Failed(f"timed out waiting for {what} on {page.url}")
        time.sleep(0.1)


def wait_for(page, selector: str, what: str, timeout_ms: int = WAIT_MS) -> None:
    try:
        page.wait_for_selector(selector, state="visible", timeout=timeout_ms)
    except Exception as error:
        raise Failed(f"timed out waiting for {what} ({selector}) on {page.url}: {error}") from error


class Shots:
    """Screenshots written as optimised PNGs into the output folder."""

    def __init__(self, out: Path, width: int, max_height: int, max_kb: int):
        self.out, self.width, self.max_height, self.max_kb = out, width, max_height, max_kb
        self.written: list[Path] = []
        out.mkdir(parents=True, exist_ok=True)

    def take(self, page, name: str, *, full_page: bool = True, clip: dict | None = None,
             max_height: int | None = None) -> None:
        """Screenshot the page (whole, or CLIP in CSS pixels), cut at MAX_HEIGHT image pixels."""
        page.evaluate("document.fonts.ready.then(() => true)")
        png = page.screenshot(full_page=full_page or clip is not None, clip=clip, animations="disabled")
        path = self.out / name
        size = save_png(png, path, width=self.width, max_height=min(max_height or self.max_height, self.max_height),
                        max_kb=self.max_kb)
        self.written.append(path)
        log(f"wrote {path} ({size[0]}×{size[1]} px, {path.stat().st_size // 1024} KB)")


def save_png(png: bytes, path: Path, *, width: int, max_height: int, max_kb: int) -> tuple[int, int]:
    """Scale down to WIDTH, cut at MAX_HEIGHT, and save as small as Pillow makes it: full colour when that fits
    MAX_KB, else 256 colours (screenshots are mostly flat colour), else narrower until it fits."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    if im.height > max_height:
        im = im.crop((0, 0, im.width, max_height))
    scale = min(1.0, width / im.width)
    while True:
        sized = im if scale == 1.0 else im.resize((round(im.width * scale), round(im.height * scale)),
                                                  Image.Resampling.LANCZOS)
        for candidate in (sized, sized.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)):
            buffer = io.BytesIO()
            candidate.save(buffer, "PNG", optimize=True)
            if buffer.tell() <= max_kb * 1024:
                path.write_bytes(buffer.getvalue())
                return sized.size
        scale *= 0.85
        if sized.width < 500:
            raise Failed(f"{path.name}: cannot get under {max_kb} KB")


def identify(page, base: str, photo: Path) -> None:
    """Give the photo to the identification page and wait for the pills' answers and the warning."""
    page.goto(base + "/")
    wait_for(page, "#file-input", "the identification page", timeout_ms=WAIT_MS)
    page.set_input_files("#file-input", [str(photo)])
    wait_for(page, "#warnings .warning", "the warning about the interacting pair")
    until(page, "document.querySelectorAll('#answers article.answer').length >= 2", "an answer for each pill")
    until(page, "document.getElementById('result').getAttribute('aria-busy') !== 'true'", "the answer to finish")
    until(page, "[...document.images].every((i) => i.complete)", "the pictures on the answer")


def region(page, first: str, last: str | None = None, *, pad: int = 12) -> dict:
    """The clip (CSS px, page coordinates, the page's whole width) from FIRST's top to LAST's bottom."""
    box = page.evaluate("""([first, last]) => {
      const a = document.querySelector(first), b = document.querySelector(last || first);
      if (!a || !b) return null;
      return { top: a.getBoundingClientRect().top + window.scrollY,
               bottom: b.getBoundingClientRect().bottom + window.scrollY,
               width: document.documentElement.clientWidth };
    }""", [first, last])
    if box is None:
        raise Failed(f"{page.url} has no {first}{' or ' + last if last else ''}: the page changed, update the script")
    top = max(0, box["top"] - pad)
    return {"x": 0, "y": top, "width": box["width"], "height": box["bottom"] + pad - top}


def take_all(browser: Browser, shots: Shots, server: Server, photo: Path, run: str, reports: Path,
             korean: bool) -> None:
    page = browser.page("en-US")
    log(f"identification page: {photo.name}")
    identify(page, server.base, photo)
    shots.take(page, "identify-warning.png", max_height=IDENTIFY_HEIGHT)

    log("QR phone hand-off")
    page.goto(server.base + "/")
    wait_for(page, "#phone-open", "the phone button")
    page.click("#phone-open")
    wait_for(page, "#phone #qr", "the QR code panel")
    until(page, "document.getElementById('qr').complete && document.getElementById('qr').naturalWidth > 0",
          "the QR code to load")
    until(page, "document.getElementById('phone-url').textContent.length > 0", "the phone URL")
    # the left column down to the panel's end: the photo options, the buttons and the QR panel
    edge = page.evaluate("""(() => {
      const give = document.getElementById('give').getBoundingClientRect();
      const panel = document.getElementById('phone').getBoundingClientRect();
      return { right: Math.max(give.right, panel.right), bottom: panel.bottom + window.scrollY };
    })()""")
    shots.take(page, "phone-qr.png", clip={"x": 0, "y": 0, "width": edge["right"] + 24, "height": edge["bottom"] + 24})
    page.click("#phone-close")
    page.context.close()

    if korean:
        page = browser.page("ko-KR")
        log(f"identification page in Korean: {photo.name}")
        identify(page, server.base, photo)
        if page.evaluate("document.documentElement.lang") != "ko":
            raise Failed("the page did not switch to Korean for a ko-KR browser")
        shots.take(page, "identify-warning-ko.png", max_height=IDENTIFY_HEIGHT)
        page.context.close()

    page = browser.page("en-US", zoom=1.0)  # the runs table needs the width
    log("dashboard: runs")
    page.goto(server.base + "/runs")
    wait_for(page, "#runs tbody tr th a", "the list of runs")
    until(page, "!document.getElementById('count').textContent.startsWith('Loading')", "the run count")
    shots.take(page, "dashboard-runs.png", clip=region(page, "header.top", "nav.pager", pad=16))
    page.context.close()

    page = browser.page("en-US")
    log(f"dashboard: run {run}")
    page.goto(f"{server.base}/runs/{run}")
    for chart in ("loss", "top1", "f1", "lr"):
        wait_for(page, f"#chart-{chart} svg", f"the run's {chart} curve")
    shots.take(page, "dashboard-run.png", clip=region(page, "section[aria-labelledby=curves-h]"))
    page.context.close()

    for name, file, first, last in (
            ("report-eval.png", "eval-report.html", "#r0", "#r0-curves"),
            ("report-eval-charts.png", "eval-report.html", "#r0-confusion", "#r0-calibration"),
            ("report-inspect.png", "inspect-report.html", "body", "#classes")):
        page = browser.page("en-US")
        log(f"report: {file} from {first} to {last}")
        page.goto((reports / file).resolve().as_uri())
        wait_for(page, f"{last} img, {last} svg", f"a chart in {file} ({last})", timeout_ms=15_000)
        until(page, "[...document.images].every((i) => i.complete && i.naturalWidth > 0)", f"the pictures in {file}")
        shots.take(page, name, clip=region(page, first, last, pad=0 if first == "body" else 12))
        page.context.close()


# --- main -----------------------------------------------------------------------------------------------------

def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/screenshots.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images",
                        help="Folder for the PNGs (default: docs/images).")
    parser.add_argument("--home", type=Path, default=None,
                        help="Workspace folder for the run (SNAPID_HOME); default: a temporary folder, removed at the "
                             "end. A folder given here is kept.")
    parser.add_argument("--reuse", action="store_true",
                        help="Skip `snapid demo`: reuse the demo already in --home from an earlier run (for retakes).")
    parser.add_argument("--per-class", type=int, default=8, help="Demo single-pill photos per pill kind (default: 8).")
    parser.add_argument("--multi", type=int, default=24, help="Demo photos with several pills (default: 24).")
    parser.add_argument("--detector-epochs", type=int, default=8,
                        help="Epochs of the demo's pill detector (default: 8).")
    parser.add_argument("--phone-url", default="http://192.168.1.20:8000",
                        help="Base URL shown in the QR hand-off (the server's --public-url; '' for the detected one). "
                             "Default: an example LAN address, so the picture shows what a phone would open.")
    parser.add_argument("--no-korean", dest="korean", action="store_false", help="Skip the Korean answer page.")
    parser.add_argument("--width", type=int, default=1200,
                        help="Browser width and the PNGs' largest width in px (default: 1200).")
    parser.add_argument("--height", type=int, default=1000, help="Browser window height in image px (default: 1000).")
    parser.add_argument("--zoom", type=float, default=1.25,
                        help="Image px per CSS px: the page is laid out WIDTH/ZOOM px wide, text reads larger "
                             "(default: 1.25).")
    parser.add_argument("--max-height", type=int, default=2000,
                        help="Full-page shots are cut at this height in image px (default: 2000).")
    parser.add_argument("--max-kb", type=int, default=300, help="Largest PNG in KB (default: 300).")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM, help=f"Chromium executable (default: {CHROMIUM}).")
    args = parser.parse_args(argv)
    if args.reuse and args.home is None:
        parser.error("--reuse needs --home (the workspace of an earlier run)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    temporary = args.home is None
    home = Path(tempfile.mkdtemp(prefix="snapid-screenshots-")) if temporary else args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SNAPID_HOME": str(home), "SNAPID_DRAIN_S": "0.5"}
    env.pop("SNAPID_DB_URL", None)  # the workspace's own SQLite, never a shared database
    log(f"workspace {home}{' (temporary)' if temporary else ''}; images to {args.out}")
    server = browser = None
    try:
        bundle, run = pipeline(home, env, args)
        photos = together_photos(home)
        server = Server(bundle, env, home / "screenshot-logs", args.phone_url)
        server.wait_ready()
        photo = warning_photo(server, photos)
        browser = Browser(args.chromium, args.width, args.height, args.zoom)
        shots = Shots(args.out, args.width, args.max_height, args.max_kb)
        take_all(browser, shots, server, photo, run, home / "reports", args.korean)
        if browser.errors:
            log("the pages reported errors (the pictures were taken anyway):\n  " + "\n  ".join(browser.errors))
    except Exception as error:  # a Failed step says why; anything else comes with its traceback
        if not isinstance(error, Failed):
            traceback.print_exc()
        print(f"[screenshots] FAILED: {error}", file=sys.stderr, flush=True)
        if temporary:
            print(f"[screenshots] the workspace is kept for a look: {home}", file=sys.stderr)
            temporary = False
        return 1
    finally:
        if browser is not None:
            browser.close()
        if server is not None:
            server.stop()
    if temporary:
        shutil.rmtree(home, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f} s: " + ", ".join(p.name for p in shots.written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
