"""Webmail check: the Roundcube login page is served and a login with a real account succeeds."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

from tools.mailcheck.mail import AUTH_TIMEOUT, describe_error, one_line
from tools.mailcheck.results import Scrubber, WebmailResult
from tools.mailcheck.targets import Target


class _FormParser(HTMLParser):
    """Collect ``<input>`` names and values, and Roundcube's displayed messages."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "input":
            a = dict(attrs)
            if a.get("name"):
                self.inputs[a["name"] or ""] = a.get("value") or ""
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _parse_page(html: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser


def _page_message(page: _FormParser, html: str) -> str:
    m = re.search(r"display_message\(\s*\"((?:[^\"\\]|\\.)*)\"", " ".join(page.scripts) or html)
    if m:
        return one_line(m.group(1).replace('\\"', '"'), 100)
    return "the login page was shown again"


def check_webmail(target: Target, *, timeout: float = AUTH_TIMEOUT) -> WebmailResult:
    """GET the webmail URL (Roundcube login form), then log in with the domain's account over plain HTTP.

    Success: the login POST ends (after redirects) on a ``_task=mail`` URL that shows no login form.
    """
    url = target.webmail_url or ""
    scrub = Scrubber([target.account.password])

    def result(ok: bool, detail: str) -> WebmailResult:
        return WebmailResult(target.domain, url, ok, scrub(detail))

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", "mailstack-verify")]
    try:
        with opener.open(url, timeout=timeout) as resp:
            html = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return result(False, f"GET {url} answered HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return result(
            False,
            f"GET {url} failed: {describe_error(reason) if isinstance(reason, BaseException) else reason}",
        )
    form = _parse_page(html)
    missing = [n for n in ("_user", "_pass", "_token") if n not in form.inputs]
    if missing:
        return result(False, f"GET {url} is not the Roundcube login page (no {', '.join(missing)} field)")
    parts = urllib.parse.urlsplit(url)
    login_url = urllib.parse.urlunsplit(parts._replace(query="_task=login", fragment=""))
    body = urllib.parse.urlencode(
        {
            "_task": "login",
            "_action": "login",
            "_token": form.inputs["_token"],
            "_timezone": "UTC",
            "_url": "",
            "_user": target.account.address,
            "_pass": target.account.password,
        }
    ).encode()
    request = urllib.request.Request(login_url, data=body, method="POST")
    try:
        with opener.open(request, timeout=timeout) as resp:
            final_url = resp.geturl()
            html = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        page_html = exc.read().decode("utf-8", "replace")
        page = _parse_page(page_html)
        return result(
            False,
            f"login as {target.account.address} refused: HTTP {exc.code}: {_page_message(page, page_html)}",
        )
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return result(
            False,
            f"login POST failed: {describe_error(reason) if isinstance(reason, BaseException) else reason}",
        )
    page = _parse_page(html)
    task = urllib.parse.parse_qs(urllib.parse.urlsplit(final_url).query).get("_task", [""])[0]
    if task == "mail" and "_pass" not in page.inputs:
        return result(True, f"login page served; login as {target.account.address} succeeded")
    return result(False, f"login as {target.account.address} failed: {_page_message(page, html)}")
