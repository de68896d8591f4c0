#!/usr/bin/env python3
"""Two real browser pages and one TCP client chat through the relay's WebSocket door.

    python3 tests/browser/chat_in_two_pages.py --page http://127.0.0.1:8222/ \\
        --chat 127.0.0.1:9000 --chromium /usr/bin/chromium [--screenshot a.png] [--timeout 15]

The relay must run in line mode with --tag --announce. Pages A and B open the built-in chat page
(http/page) in two browser contexts; a plain TCP socket joins the chat port. Each of them sends
a message that the two others must see and that must never come back to its sender, and a
message with HTML in it must show literally. Every wait is bounded by --timeout seconds; nothing
sleeps to synchronise.

Exit status: 0 all good, 1 a check failed, 2 Playwright is not installed (or a bad argument),
3 no Chromium at the given path.
"""
import argparse
import ipaddress
import json
import os
import socket
import sys
import time

OK_LINE = "browser chat ok: 2 pages and 1 TCP client"


class Failure(Exception):
    """A check that did not hold."""


class TcpClient:
    """A line-reading chat client on a plain socket."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buffer = b""
        self.lines = []  # every complete line received, decoded, without its line end

    def send(self, data):
        self.sock.sendall(data)

    def wait_line(self, what, predicate, timeout):
        """Reads until a line satisfies predicate; all lines read stay in self.lines."""
        for line in self.lines:
            if predicate(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\n", 1)
                line = raw.decode("utf-8", "replace").rstrip("\r")
                self.lines.append(line)
                if predicate(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"the TCP client did not receive {what} within {timeout} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise Failure(f"the relay closed the TCP client before it received {what}")
            self.buffer += chunk

    def close(self):
        self.sock.close()


def parse_chat(value):
    """HOST:PORT (or [V6]:PORT) on a loopback address."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot resolve {host}: {e}")
    if not all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos):
        raise argparse.ArgumentTypeError(f"{host} is not a loopback address")
    return host, int(port)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", required=True, help="the chat page's URL, http://HOST:PORT/")
    parser.add_argument("--chat", required=True, type=parse_chat, help="the chat port, HOST:PORT")
    parser.add_argument("--chromium", required=True, help="the Chromium executable")
    parser.add_argument("--screenshot", help="save page A (390x720) as this PNG at the end")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per wait (15)")
    args = parser.parse_args()

    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed (python3 -m pip install playwright)")
        return 2
    if not os.path.isfile(args.chromium) or not os.access(args.chromium, os.X_OK):
        print(f"no Chromium executable at {args.chromium} (apt-get install chromium)")
        return 3

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=args.chromium, headless=True, args=["--no-sandbox"]
        )
        check = Check(browser, args)
        try:
            check.run()
        except (Failure, PlaywrightError) as e:
            print(f"FAILED: {e}".rstrip())
            check.dump()
            return 1
        finally:
            if check.tcp:
                check.tcp.close()
            browser.close()
    print(OK_LINE)
    return 0


class Check:
    """The scenario, with what it needs to say what went wrong."""

    def __init__(self, browser, args):
        self.browser = browser
        self.args = args
        self.ms = args.timeout * 1000
        self.pages = {}
        self.problems = {}  # page name -> console errors and uncaught exceptions
        self.tcp = None

    def open_page(self, name, **context_options):
        page = self.browser.new_context(**context_options).new_page()
        self.pages[name] = page
        self.problems[name] = []
        page.on("pageerror", lambda e: self.problems[name].append(f"uncaught: {e}"))
        page.on(
            "console",
            lambda m: m.type == "error" and self.problems[name].append(f"console: {m.text}"),
        )
        page.goto(self.args.page, timeout=self.ms)
        self.wait_selector(name, "#state[data-state=open]", "a connection (#state open)")
        return page

    def wait_selector(self, name, selector, what):
        try:
            self.pages[name].wait_for_selector(selector, timeout=self.ms)
        except Exception as e:
            raise Failure(f"page {name} did not show {what} within {self.args.timeout} s") from e

    def wait_log(self, name, kind, suffix):
        """Waits until page `name` has a chatLog entry of `kind` whose text ends with suffix."""
        try:
            self.pages[name].wait_for_function(
                "([kind, suffix]) => (window.chatLog || [])"
                ".some(e => e.kind === kind && e.text.endsWith(suffix))",
                arg=[kind, suffix],
                timeout=self.ms,
            )
        except Exception as e:
            raise Failure(
                f"page {name} has no {kind!r} entry ending with {suffix!r} "
                f"after {self.args.timeout} s"
            ) from e

    def chat_log(self, name):
        return self.pages[name].evaluate("window.chatLog || null")

    def send_from_page(self, name, text):
        page = self.pages[name]
        page.fill("#input", text, timeout=self.ms)
        page.press("#input", "Enter", timeout=self.ms)
        self.wait_log(name, "me", text)
        if page.input_value("#input") != "":
            raise Failure(f"page {name} did not clear #input after sending")

    def expect_everywhere(self, text, pages, tcp):
        for name in pages:
            self.wait_log(name, "in", text)
        if tcp:
            self.tcp.wait_line(repr(text), lambda l: l.endswith(text), self.args.timeout)

    def run(self):
        # A opens first, then B: any "joined" notice B sees afterwards is the TCP client's,
        # which tells us the relay has it in the room before anyone speaks.
        self.open_page("A", viewport={"width": 390, "height": 720})
        self.open_page("B")
        host, port = self.args.chat
        self.tcp = TcpClient(host, port, self.args.timeout)
        try:
            self.pages["B"].wait_for_function(
                "() => (window.chatLog || []).some(e => e.kind === 'notice'"
                " && / joined$/.test(e.text))",
                timeout=self.ms,
            )
        except Exception as e:
            raise Failure("page B saw no '* N joined' notice for the TCP client "
                          "(does the relay run with --framing line --tag --announce?)") from e

        self.send_from_page("A", "hello from A")
        self.expect_everywhere("hello from A", ["B"], tcp=True)
        self.send_from_page("B", "hello from B")
        self.expect_everywhere("hello from B", ["A"], tcp=True)
        self.tcp.send(b"hello from tcp\n")
        self.expect_everywhere("hello from tcp", ["A", "B"], tcp=False)

        html = "<b>not bold</b>"
        self.send_from_page("A", html)
        self.expect_everywhere(html, ["B"], tcp=True)
        b = self.pages["B"]
        shown = b.locator("#log > .entry").last.inner_text(timeout=self.ms)
        if "<b>" not in shown:
            raise Failure(f"page B's last entry shows {shown!r}, not the literal <b>")
        if b.locator("#log b").count() != 0:
            raise Failure("page B's #log has a <b> element: message text was parsed as HTML")

        # A last message from TCP: the relay forwards in order, so an echo of anything
        # sent earlier would reach its sender before this one.
        self.tcp.send(b"bye from tcp\n")
        self.expect_everywhere("bye from tcp", ["A", "B"], tcp=False)
        self.check_no_echo()

        for name, problems in self.problems.items():
            if problems:
                raise Failure(f"page {name} reported errors: {problems}")
        if self.args.screenshot:
            self.pages["A"].screenshot(path=self.args.screenshot, timeout=self.ms)

    def check_no_echo(self):
        own = {"A": ["hello from A", "<b>not bold</b>"], "B": ["hello from B"]}
        for name, texts in own.items():
            for entry in self.chat_log(name):
                if entry["kind"] == "in" and any(entry["text"].endswith(t) for t in texts):
                    raise Failure(f"page {name} received its own message back: {entry!r}")
        for line in self.tcp.lines:
            if line.endswith("hello from tcp") or line.endswith("bye from tcp"):
                raise Failure(f"the TCP client received its own message back: {line!r}")

    def dump(self):
        for name, page in self.pages.items():
            try:
                log = json.dumps(self.chat_log(name), ensure_ascii=False)
            except Exception as e:
                log = f"(unreadable: {e})"
            print(f"page {name} chatLog: {log}")
            for problem in self.problems.get(name, []):
                print(f"page {name} {problem}")
        if self.tcp:
            print(f"TCP client lines: {json.dumps(self.tcp.lines, ensure_ascii=False)}")
            if self.tcp.buffer:
                print(f"TCP client partial line: {self.tcp.buffer!r}")


if __name__ == "__main__":
    sys.exit(main())
