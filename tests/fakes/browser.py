"""A scripted browser: follows redirects, keeps cookies, fills and submits sign-in forms, stops at the app.

Used three ways:
- as ``BROWSER`` for ``mailtoken login --browser``: ``python tests/fakes/browser.py URL`` opens the authorize
  URL, signs in, and delivers the redirect to mailtoken's loopback listener, as a person's browser would;
- by tests, to approve a device code at a real provider's pages (``Browser.approve_device``);
- by tests of ``login --paste``, to get the URL the browser was sent to without delivering it.

Stdlib only and standalone (runnable by path), so it works as a BROWSER command from any working directory.
Trusts the CA in $SSL_CERT_FILE (or $REQUESTS_CA_BUNDLE). Sign-in forms get ``login`` = $FAKE_BROWSER_LOGIN
(else the request's login_hint) and any password; consent and confirmation forms are submitted as they are.
"""

from __future__ import annotations

import http.cookiejar
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    text_inputs: list[str] = field(default_factory=list)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            form = self.forms[-1]
            form.fields[a["name"]] = a.get("value", "")
            if a.get("type", "text") in ("text", "email", "password"):
                form.text_inputs.append(a["name"])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None


def _context(cafile: str | None = None) -> ssl.SSLContext:
    cafile = cafile or os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    return ssl.create_default_context(cafile=cafile or None)


def is_app_redirect(url: str) -> bool:
    """The authorization response: the provider sends the browser back to the app with code (or error) and state."""
    parts = urllib.parse.urlsplit(url)
    fields = urllib.parse.parse_qs(parts.query or parts.fragment)
    return "state" in fields and ("code" in fields or "error" in fields)


class Browser:
    def __init__(self, login: str | None = None, password: str = "any-password", cafile: str | None = None) -> None:
        self.login = login
        self.password = password
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=_context(cafile)),
            urllib.request.HTTPCookieProcessor(self.jar),
            _NoRedirect(),
        )
        self.visited: list[str] = []

    def _fetch(self, url: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
        """One request: (status, Location or "", body)."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        self.visited.append(url)
        try:
            with self.opener.open(urllib.request.Request(url, data=body), timeout=15) as resp:
                return resp.status, resp.headers.get("Location", ""), resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Location", ""), exc.read().decode("utf-8", "replace")

    def run(self, url: str, deliver: bool = True, max_steps: int = 20) -> str:
        """Browse from ``url`` until the provider sends the browser back to the app; return that address.

        With ``deliver`` the address is opened too (mailtoken's loopback listener receives the code).
        Returns "" when the flow ends on a page (device flow: "success" page).
        """
        hint = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("login_hint", [""])[0]
        login = self.login or hint or "user@example.org"
        data: dict[str, str] | None = None
        for _ in range(max_steps):
            status, location, page = self._fetch(url, data)
            data = None
            if status in (301, 302, 303, 307, 308) and location:
                url = urllib.parse.urljoin(url, location)
                if is_app_redirect(url):
                    if deliver:
                        self._fetch(url)
                    return url
                continue
            if status >= 400:
                raise RuntimeError(f"browser: {url} answered {status}: {page[:300]}")
            parser = _Forms()
            parser.feed(page)
            forms = [f for f in parser.forms if f.method == "post"]
            if not forms:
                return ""
            form = forms[0]
            values = dict(form.fields)
            for name in form.text_inputs:
                if name == "login":
                    values[name] = login
                elif name == "password":
                    values[name] = self.password
            url, data = urllib.parse.urljoin(url, form.action), values
        raise RuntimeError(f"browser: no end after {max_steps} steps; visited {self.visited}")

    def approve_device(self, verification_uri_complete: str) -> None:
        """Approve a device code as the user would at the provider's pages."""
        self.run(verification_uri_complete, deliver=False)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: browser.py URL", file=sys.stderr)
        return 2
    try:
        Browser(os.environ.get("FAKE_BROWSER_LOGIN")).run(argv[1])
    except Exception as exc:  # a browser shows errors; it does not crash the caller
        print(f"browser: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
