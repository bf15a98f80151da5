#!/usr/bin/env python3
"""Drive the cnn3d web demo in headless Chromium and report how it went.

The page (web/index.html with ``?auto=1``) trains on its own and signals
progress through the DOM: ``document.documentElement.dataset.phase`` says what
it is doing, ``dataset.status`` becomes "done" or "error" at the end,
``window.cnn3dResult`` holds the result object and ``window.cnn3dError`` the
error text.  This script loads the page, follows the phase, takes a
screenshot, checks the browser console for errors and exits 0 only when the
page finished with "done" and logged no errors.

It speaks the W3C WebDriver protocol to ``chromedriver`` directly, over plain
HTTP, instead of using selenium: only the Python standard library is needed,
so CI installs nothing from PyPI (just Debian's chromium + chromedriver).

WebGPU runs on SwiftShader (Vulkan on the CPU), so no GPU is needed.

Usage:
  python3 web/drive.py --url 'http://127.0.0.1:8000/index.html?auto=1&epochs=1' \
      --screenshot docs/web.png --result out.json
"""

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SCRIPT_TIMEOUT_S = 60
POLL_INTERVAL_S = 2.0
MAX_SCREENSHOT_HEIGHT = 4000

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--window-size=1280,1600",
]

POLL_SCRIPT = (
    'return [document.documentElement.dataset.status || "", '
    "JSON.stringify(window.cnn3dResult || null), "
    "window.cnn3dError || null, "
    'document.documentElement.dataset.phase || ""]'
)

# Console messages that are printed but do not count as page errors.
IGNORED_CONSOLE = ("favicon.ico",)

# WebDriver errors after which polling the session is pointless.
FATAL_ERRORS = ("invalid session id", "no such window", "session not created")

# Base URL of the running chromedriver, set once it is started.
BASE_URL = ""


class WebDriverError(Exception):
    """A WebDriver command failed; ``error`` is the W3C error code."""

    def __init__(self, error, message, status=None):
        super().__init__(f"{error}: {message}" + (f" (HTTP {status})" if status else ""))
        self.error = error
        self.status = status


def wd(method, path, body=None, timeout=SCRIPT_TIMEOUT_S + 30):
    """Send one WebDriver command and return the "value" of the JSON reply."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE_URL + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json; charset=utf-8")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            reply = json.loads(resp.read().decode() or "null")
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            value = json.loads(text).get("value") or {}
            error, message = value.get("error", "unknown error"), value.get("message", "")
        except (ValueError, AttributeError):
            error, message = "unknown error", text.strip()[:500]
        # Drop the native stack trace chromedriver appends to its messages.
        message = " ".join(message.split("Stacktrace:")[0].split())
        raise WebDriverError(error, message, e.code) from None
    return reply.get("value") if isinstance(reply, dict) else reply


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


def start_chromedriver(chromedriver, log_path):
    """Start chromedriver on a free port; return the process once it is ready."""
    global BASE_URL
    port = free_port()
    BASE_URL = f"http://127.0.0.1:{port}"
    log = open(log_path, "wb")
    proc = subprocess.Popen([chromedriver, f"--port={port}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()  # the child keeps its own descriptor
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromedriver exited with status {proc.returncode}")
        try:
            if (wd("GET", "/status", timeout=5) or {}).get("ready"):
                return proc
        except (OSError, WebDriverError, ValueError):
            pass
        time.sleep(0.2)
    stop_chromedriver(proc)
    raise RuntimeError("chromedriver did not report ready within 30 s")


def stop_chromedriver(proc):
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def new_session(chromium):
    caps = {
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": CHROMIUM_ARGS},
                "goog:loggingPrefs": {"browser": "ALL"},
            }
        }
    }
    value = wd("POST", "/session", caps, timeout=120)
    sid = value["sessionId"]
    wd("POST", f"/session/{sid}/timeouts",
       {"script": SCRIPT_TIMEOUT_S * 1000, "pageLoad": 300_000})
    return sid


def execute(sid, script, args=()):
    return wd("POST", f"/session/{sid}/execute/sync", {"script": script, "args": list(args)})


def poll_page(sid, timeout, started):
    """Poll the page until it says done/error or `timeout` seconds pass.

    Returns (status, result_json, error, last_phase); status is "timeout"
    when the page never finished.
    """
    deadline = started + timeout
    last_phase = ""
    last_poll_error = None
    result_json, error = "null", None
    while True:
        try:
            status, result_json, error, phase = execute(sid, POLL_SCRIPT)
            last_poll_error = None
        except (WebDriverError, OSError) as e:
            # A long synchronous stretch on the page can make a poll time out;
            # keep trying unless the browser or session is gone.
            if isinstance(e, WebDriverError) and (
                    e.error in FATAL_ERRORS or "not reachable" in str(e)):
                raise
            if str(e) != last_poll_error:
                print(f"[{time.monotonic() - started:6.1f} s] poll failed: {e}", flush=True)
                last_poll_error = str(e)
            status, phase = "", last_phase
        if phase != last_phase:
            print(f"[{time.monotonic() - started:6.1f} s] {phase}", flush=True)
            last_phase = phase
        if status in ("done", "error"):
            return status, result_json, error, last_phase
        if time.monotonic() >= deadline:
            return "timeout", result_json, error, last_phase
        time.sleep(POLL_INTERVAL_S)


def take_screenshot(sid, path):
    """Save a PNG of the whole page (up to MAX_SCREENSHOT_HEIGHT pixels tall)."""
    try:
        # The window height includes the (headless) browser UI, about 140 px
        # in Chromium 156, so add it on top of the page height.
        page, ui = execute(sid, "return [document.documentElement.scrollHeight, "
                                "window.outerHeight - window.innerHeight]")
        height = min(max(int(page), 1), MAX_SCREENSHOT_HEIGHT) + max(int(ui), 0)
        wd("POST", f"/session/{sid}/window/rect", {"width": 1280, "height": height})
    except (WebDriverError, OSError, TypeError, ValueError) as e:
        print(f"note: could not resize the window for the screenshot: {e}", flush=True)
    execute(sid, "window.scrollTo(0, 0)")
    png = base64.b64decode(wd("GET", f"/session/{sid}/screenshot"))
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as f:
        f.write(png)
    print(f"screenshot: {path} ({len(png)} bytes)", flush=True)


def browser_log(sid):
    """Return the browser console entries, or None if no endpoint provides them."""
    attempts = [("POST", f"/session/{sid}/se/log", {"type": "browser"}),
                ("POST", f"/session/{sid}/log", {"type": "browser"})]
    for method, path, body in attempts:
        try:
            return wd(method, path, body) or []
        except WebDriverError as e:
            if e.status == 404 or e.error == "unknown command":
                continue
            print(f"warning: {method} {path} failed: {e}", file=sys.stderr, flush=True)
            return None
    print("warning: chromedriver offers no browser log endpoint", file=sys.stderr, flush=True)
    return None


def console_errors(entries):
    """Print SEVERE and WARNING entries; return the SEVERE ones that count."""
    errors = []
    for entry in entries:
        level, message = entry.get("level", ""), entry.get("message", "")
        if level not in ("SEVERE", "WARNING"):
            continue
        ignored = level == "SEVERE" and any(s in message for s in IGNORED_CONSOLE)
        note = " (ignored)" if ignored else ""
        print(f"console {level}{note}: {message}", flush=True)
        if level == "SEVERE" and not ignored:
            errors.append(message)
    return errors


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="page to load (with ?auto=1)")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--timeout", type=float, default=1200,
                   help="seconds to wait for the page to finish (default 1200)")
    p.add_argument("--screenshot", help="write a PNG of the page here")
    p.add_argument("--result", help="write window.cnn3dResult (JSON, or null) here")
    p.add_argument("--model", help="write the page's model.safetensors (window.cnn3dModelBase64()) here")
    return p.parse_args()


def main():
    args = parse_args()
    failures = []
    result = None
    started = time.monotonic()
    workdir = tempfile.TemporaryDirectory(prefix="cnn3d-drive-")
    log_path = os.path.join(workdir.name, "chromedriver.log")
    driver = None
    sid = None
    infra_failed = False
    try:
        driver = start_chromedriver(args.chromedriver, log_path)
        sid = new_session(args.chromium)
        wd("POST", f"/session/{sid}/url", {"url": args.url}, timeout=330)
        started = time.monotonic()
        status, result_json, error, phase = poll_page(sid, args.timeout, started)
        try:
            result = json.loads(result_json) if result_json else None
        except ValueError:
            failures.append(f"cnn3dResult is not valid JSON: {result_json[:200]}")
        if status == "done" and args.model:
            encoded = execute(sid, "return window.cnn3dModelBase64 ? window.cnn3dModelBase64() : null")
            if encoded:
                parent = os.path.dirname(os.path.abspath(args.model))
                os.makedirs(parent, exist_ok=True)
                with open(args.model, "wb") as f:
                    f.write(base64.b64decode(encoded))
            else:
                failures.append("the page offers no model (window.cnn3dModelBase64)")
        if status == "error":
            failures.append(f"page reported an error: {error or '(no cnn3dError set)'}")
        elif status == "timeout":
            failures.append(f"timed out after {args.timeout:g} s; last phase: {phase or '(none)'}")
    except Exception as e:  # report anything, then clean up below
        failures.append(f"driver failure: {e}")
        infra_failed = True

    try:
        if sid is not None:
            if args.screenshot:
                try:
                    take_screenshot(sid, args.screenshot)
                except Exception as e:
                    failures.append(f"screenshot failed: {e}")
            try:
                entries = browser_log(sid)
            except Exception as e:
                print(f"warning: reading the browser log failed: {e}", file=sys.stderr)
                entries = None
            if entries is None:
                failures.append("browser console log unavailable, cannot check for errors")
            else:
                failures += [f"console error: {m}" for m in console_errors(entries)]
    finally:
        if sid is not None:
            try:
                wd("DELETE", f"/session/{sid}", timeout=30)
            except Exception as e:
                print(f"warning: closing the session failed: {e}", file=sys.stderr)
        if driver is not None:
            stop_chromedriver(driver)

    if args.result:
        parent = os.path.dirname(os.path.abspath(args.result))
        os.makedirs(parent, exist_ok=True)
        with open(args.result, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")

    if failures:
        if infra_failed:
            print(f"--- tail of chromedriver's log ---\n{log_tail(log_path)}", file=sys.stderr)
        workdir.cleanup()
        for failure in failures:
            print(f"FAIL: {failure}", file=sys.stderr)
        return 1
    workdir.cleanup()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
