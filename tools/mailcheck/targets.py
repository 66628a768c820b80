"""What the check tests: the ``verify`` stack output (schema 1) read into ``Target``s, with clear errors."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tools.stackoutputs import OutputsError

SCHEMA = 1
"""Version of the ``verify`` stack output this module reads."""
PROJECT_DIR = Path(__file__).resolve().parents[2]
"""The mailstack checkout (where ``pulumi stack output`` runs)."""


class VerifyError(OutputsError):
    """The check cannot run as asked; the message is one line naming the problem and the fix (exit 2)."""


@dataclass(frozen=True)
class Account:
    """A mail account the check logs in with; the password never appears in ``repr``."""

    address: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Target:
    """One domain of the stack as the check sees it: where to connect and which account to use."""

    domain: str
    server: str
    hostname: str
    host: str
    smtp_port: int
    submission_port: int
    imap_port: int
    tls: str
    account: Account
    webmail_url: str | None = None

    @property
    def label(self) -> str:
        """Name used in messages: ``server (domain)``."""
        return f"{self.server} ({self.domain})"


def load_targets(outputs: dict) -> list[Target]:
    """Build the targets from stack outputs (the whole ``pulumi stack output --json`` object).

    The ``verify`` output has schema 1::

        {"schema": 1, "stack": "dev", "domains": [{"domain": "example1.local", "server": "mta1",
          "hostname": "mail.example1.local", "host": "127.0.0.1",
          "ports": {"smtp": 2525, "submission": 2587, "imap": 2143}, "tls": "none",
          "account": {"address": "user1@example1.local", "password": "..."},
          "webmail": {"url": "http://127.0.0.1:8081/"} or null}, ...]}

    A JSON string holding that object is accepted too. Raises ``VerifyError`` with a one-line message.
    """
    if not isinstance(outputs, dict):
        raise VerifyError(
            "stack outputs are not a JSON object: pass the output of `pulumi stack output --json`"
        )
    if "verify" not in outputs:
        raise VerifyError(
            "the stack has no `verify` output: it is not deployed yet (run `make up`) or was deployed by an "
            "older mailstack (re-run pulumi up with this version of mailstack)"
        )
    verify = outputs["verify"]
    if verify == "[secret]":
        raise VerifyError(
            "the `verify` output is hidden as [secret]: read it with `pulumi stack output --json --show-secrets`"
        )
    if isinstance(verify, str):
        try:
            verify = json.loads(verify)
        except json.JSONDecodeError as exc:
            raise VerifyError(
                f"the `verify` output is not valid JSON ({exc.msg}): re-run pulumi up"
            ) from None
    if not isinstance(verify, dict):
        raise VerifyError(
            "the `verify` output is not an object: re-run pulumi up with this version of mailstack"
        )
    schema = verify.get("schema")
    if isinstance(schema, bool) or schema != SCHEMA:
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA:
            raise VerifyError(
                f"the `verify` output has schema {schema} but this tool reads schema {SCHEMA}: "
                "update mailstack (git pull) and run the check again"
            )
        raise VerifyError(
            f"the `verify` output has schema {schema!r} but this tool reads schema {SCHEMA}: the stack was "
            "deployed by an older mailstack; re-run pulumi up with this version of mailstack"
        )
    domains = verify.get("domains")
    if not isinstance(domains, list) or not domains:
        raise VerifyError("the `verify` output lists no domains: add a domain to the stack and run pulumi up")
    problems: list[str] = []
    targets = [t for i, d in enumerate(domains) if (t := _parse_domain(i, d, problems)) is not None]
    seen: set[str] = set()
    for t in targets:
        if t.domain in seen:
            problems.append(f"domain {t.domain} is listed twice")
        seen.add(t.domain)
    if problems:
        raise VerifyError(
            "the `verify` output is malformed: " + "; ".join(problems) + " (re-run pulumi up with this "
            "version of mailstack)"
        )
    return targets


def _parse_domain(index: int, item: object, problems: list[str]) -> Target | None:
    where = f"verify.domains[{index}]"
    if not isinstance(item, dict):
        problems.append(f"{where} is not an object")
        return None
    before = len(problems)

    def text(obj: dict, key: str, path: str) -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            problems.append(f"{path}.{key} must be a non-empty string")
            return ""
        return value

    def port(obj: dict, key: str, path: str) -> int:
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            problems.append(f"{path}.{key} must be a port number (1-65535)")
            return 0
        return value

    domain = text(item, "domain", where)
    server = text(item, "server", where)
    hostname = text(item, "hostname", where)
    host = text(item, "host", where)
    tls = text(item, "tls", where)
    ports = item.get("ports")
    if not isinstance(ports, dict):
        problems.append(f"{where}.ports must be an object with smtp, submission and imap")
        ports = {}
    smtp, submission, imap = (port(ports, k, f"{where}.ports") for k in ("smtp", "submission", "imap"))
    account = item.get("account")
    if not isinstance(account, dict):
        problems.append(f"{where}.account must be an object with address and password")
        account = {}
    address = text(account, "address", f"{where}.account")
    password = account.get("password")
    if not isinstance(password, str) or not password:
        problems.append(f"{where}.account.password must be a non-empty string")
    if address and domain and not address.lower().endswith("@" + domain.lower()):
        problems.append(f"{where}.account.address {address} is not in domain {domain}")
    webmail = item.get("webmail")
    url: str | None = None
    if webmail is not None:
        url = webmail.get("url") if isinstance(webmail, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(f"{where}.webmail must be null or an object with an http(s) url")
            url = None
    if len(problems) > before:
        return None
    return Target(
        domain=domain,
        server=server,
        hostname=hostname,
        host=host,
        smtp_port=smtp,
        submission_port=submission,
        imap_port=imap,
        tls=tls,
        account=Account(address, str(password)),
        webmail_url=url,
    )


def override_host(targets: Iterable[Target], host: str) -> list[Target]:
    """Connect to ``host`` for every domain (a remote Docker host); webmail URLs get that host too."""
    result = []
    for t in targets:
        url = t.webmail_url
        if url:
            parts = urllib.parse.urlsplit(url)
            netloc = f"[{host}]" if ":" in host else host
            if parts.port:
                netloc += f":{parts.port}"
            url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        result.append(replace(t, host=host, webmail_url=url))
    return result
