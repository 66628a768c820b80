"""Test scaffolding: a two-domain mail lab of Debian's Postfix and Dovecot on loopback ports.

It stands in for the deployed stack (one docker-mailserver per domain) so that ``tools.verify`` can be
tested against real SMTP and IMAP servers without Docker. Per domain it runs:

* one Postfix instance (own config, queue and data directories; ``postfix -c DIR start``) listening on
  127.0.0.1 only: an smtp listener (the domain's "port 25", no AUTH) and a submission listener with Dovecot
  SASL, relay rules like a real MTA (``permit_sasl_authenticated, reject_unauth_destination``), the domain
  as its only virtual mailbox domain with a map of its users (unknown users are rejected), delivery over
  LMTP into Dovecot, and a ``texthash`` transport map to the other domain's smtp port rendered by
  ``config.postfix.render_transport`` (loopback IP in brackets: no DNS involved);
* one Dovecot instance (IMAP on a loopback port, LMTP and the SASL socket in its own base_dir) with a
  passwd-file of ``{SHA512-CRYPT}`` hashes made by ``config.passwords.hash_password``. One Dovecot per
  domain, so ``stop_imap`` can take one domain's IMAP away (its LMTP and SASL stay up).

Submission and IMAP offer STARTTLS (optional, like docker-mailserver with a certificate) with a server
certificate for both ``mail.<domain>`` names, signed by a throwaway CA (``ca_file``).

Everything lives under a fresh directory made with ``tempfile.mkdtemp`` rather than pytest's ``tmp_path``:
the Postfix and Dovecot daemons drop to unprivileged users (postfix, dovecot, mail) that must traverse
the path, and pytest's ``/tmp/pytest-of-<user>`` is mode 0700. ``stop()`` copies the logs to a directory
of the caller's choice (the test's ``tmp_path``) and removes the tree. Starting Postfix needs root.
Nothing listens anywhere but 127.0.0.1 on free high ports.
"""

from __future__ import annotations

import datetime
import imaplib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.passwords import CRYPT_ALPHABET, hash_password
from config.postfix import Route, render_transport

DOMAINS = ("example1.local", "example2.local")
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on (used for a deliberately broken route)."""
    return free_port()


def wait_for_port(port: int, *, up: bool, timeout: float = START_TIMEOUT) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections (``up``) or refuses them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                is_up = True
        except OSError:
            is_up = False
        if is_up == up:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"127.0.0.1:{port} still {'down' if up else 'up'} after {timeout}s")
        time.sleep(0.1)


class LabIMAP(imaplib.IMAP4):
    """IMAP client that connects from 127.0.0.2: the lab's own logins (to put messages in place and look at
    them) stay out of Dovecot's per-IP auth penalty, which the check's wrong-password probes from 127.0.0.1
    raise on purpose, and so they do not slow the tests down."""

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=("127.0.0.2", 0))


def write_certificates(directory: Path, hostnames: list[str]) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a server certificate for ``hostnames``; return (ca, cert, key) paths."""
    directory.mkdir(mode=0o755, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str,
        issuer: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailfixture test CA")])
    ca_cert = build("mailfixture test CA", ca_name, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(hostnames[0], ca_name, key, ca_key, ca=False)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[2].chmod(0o600)  # read by the Postfix and Dovecot masters, as root
    return paths


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _salt() -> str:
    return "".join(secrets.choice(CRYPT_ALPHABET) for _ in range(16))


@dataclass
class LabDomain:
    """One domain of the lab: its ports, its account and where its two daemons keep their files."""

    name: str
    index: int
    dir: Path
    smtp_port: int = field(default_factory=free_port)
    submission_port: int = field(default_factory=free_port)
    imap_port: int = field(default_factory=free_port)
    user: str = ""
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    imap_enabled: bool = True
    dovecot_extra: str = ""  # appended to dovecot.conf, as docker-mailserver appends dovecot.cf
    routes: dict[str, int] = field(default_factory=dict)  # broken routes: peer domain -> port
    milter_port: int | None = None
    """A milter (Rspamd's proxy) on this loopback port for the submission service, as docker-mailserver adds
    Rspamd to smtpd_milters; ``None``: no milter."""

    def __post_init__(self) -> None:
        """Name the account ``user<index>@<domain>``."""
        self.user = self.user or f"user{self.index}@{self.name}"

    @property
    def server(self) -> str:
        """Container-like server name, as the stack names them (mta1, mta2)."""
        return f"mta{self.index}"

    @property
    def hostname(self) -> str:
        """The server's FQDN (distinct from the mail domain, like the stack's)."""
        return f"mail.{self.name}"

    @property
    def postfix_dir(self) -> Path:
        """Postfix config_directory (main.cf, master.cf, maps)."""
        return self.dir / "postfix"

    @property
    def dovecot_conf(self) -> Path:
        """This domain's dovecot.conf."""
        return self.dir / "dovecot" / "dovecot.conf"

    @property
    def dovecot_run(self) -> Path:
        """Dovecot base_dir: LMTP and SASL sockets, master.pid."""
        return self.dir / "dovecot" / "run"


class MailLab:
    """Two Postfix+Dovecot domains on loopback; ``start()``/``stop()``, plus knobs to break things."""

    def __init__(
        self,
        postfix: str,
        dovecot: str,
        postsuper: str,
        domains: tuple[str, ...] = DOMAINS,
        milters: dict[str, int] | None = None,
    ) -> None:
        """Prepare (not start) the lab; the program paths come from ``require_tool``."""
        self.postfix, self.dovecot, self.postsuper = postfix, dovecot, postsuper
        self.root = Path(tempfile.mkdtemp(prefix="mailstack-lab-"))
        self.root.chmod(0o755)
        self.domains = [
            LabDomain(name, i + 1, self.root / f"d{i + 1}", milter_port=(milters or {}).get(name))
            for i, name in enumerate(domains)
        ]
        self.mail_user = pwd.getpwnam("mail")
        self.tls_dir = self.root / "tls"
        self.ca_file = self.tls_dir / "ca.pem"
        self._started: list[LabDomain] = []

    def domain(self, name: str) -> LabDomain:
        """The lab domain called ``name``."""
        return next(d for d in self.domains if d.name == name)

    # -------------------------------------------------------------------------------- config files

    def _write_postfix(self, d: LabDomain, routes: dict[str, int] | None = None) -> None:
        """Write main.cf, master.cf and maps; ``routes`` overrides the smtp port per peer domain."""
        d.postfix_dir.mkdir(parents=True, exist_ok=True)
        (d.dir / "queue").mkdir(mode=0o755, exist_ok=True)  # root-owned; `postfix check` fills it in
        peers = [o for o in self.domains if o is not d]
        ports = {o.name: (routes or {}).get(o.name, o.smtp_port) for o in peers}
        (d.postfix_dir / "transport").write_text(
            render_transport([Route(o.name, "127.0.0.1", ports[o.name]) for o in peers])
        )
        (d.postfix_dir / "vmailbox").write_text(f"{d.user} OK\n")
        run_dir = d.dovecot_run
        (d.postfix_dir / "main.cf").write_text(f"""\
# mailfixture: Postfix for {d.name} (test scaffolding, loopback only)
compatibility_level = 3.6
queue_directory = {d.dir}/queue
data_directory = {d.dir}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-{d.server}
maillog_file = {d.dir}/postfix.log
maillog_file_prefixes = {d.dir}
myhostname = {d.hostname}
mydomain = {d.name}
myorigin = $myhostname
mydestination =
local_transport = error:local delivery is disabled in the fixture
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_tls_cert_file = {self.tls_dir}/server.pem
smtpd_tls_key_file = {self.tls_dir}/server.key
smtpd_tls_loglevel = 1
virtual_mailbox_domains = {d.name}
virtual_mailbox_maps = texthash:{d.postfix_dir}/vmailbox
virtual_transport = lmtp:unix:{run_dir}/lmtp
transport_maps = texthash:{d.postfix_dir}/transport
smtpd_reject_unlisted_recipient = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_sasl_type = dovecot
smtpd_sasl_path = {run_dir}/auth-postfix
smtpd_sasl_auth_enable = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
biff = no
""")
        daemons = [
            ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
            ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
            ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
            ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
            ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
            ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
            ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
            ("error", "unix", "-", "-", "n", "-", "-", "error"),
            ("retry", "unix", "-", "-", "n", "-", "-", "error"),
            ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
            ("lmtp", "unix", "-", "-", "n", "-", "-", "lmtp"),
            ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
            ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
            ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
            ("tlsmgr", "unix", "-", "-", "n", "1000?", "1", "tlsmgr"),
        ]
        lines = [
            f"# mailfixture: master.cf for {d.name}",
            f"{d.smtp_port} inet n - n - - smtpd",
            f"{d.submission_port} inet n - n - - smtpd",
            "  -o syslog_name=postfix-submission",
            "  -o smtpd_tls_security_level=may",
            "  -o smtpd_sasl_auth_enable=yes",
            "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject",
            "  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
            *(
                [f"  -o smtpd_milters=inet:127.0.0.1:{d.milter_port}", "  -o milter_default_action=tempfail"]
                if d.milter_port
                else []
            ),
            *(" ".join(row) for row in daemons),
        ]
        (d.postfix_dir / "master.cf").write_text("\n".join(lines) + "\n")

    def _write_dovecot(self, d: LabDomain) -> None:
        d.dovecot_run.parent.mkdir(parents=True, exist_ok=True)
        mail_dir = d.dir / "mail"
        mail_dir.mkdir(exist_ok=True)
        os.chown(mail_dir, self.mail_user.pw_uid, self.mail_user.pw_gid)
        users = d.dovecot_conf.parent / "users"
        users.write_text(f"{d.user}:{hash_password(d.password, _salt())}\n")
        users.chmod(0o640)
        shutil.chown(users, group="dovecot")  # read by the auth worker, which runs as dovecot
        uid, gid = self.mail_user.pw_uid, self.mail_user.pw_gid
        protocols = "imap lmtp" if d.imap_enabled else "lmtp"
        d.dovecot_conf.write_text(f"""\
# mailfixture: Dovecot for {d.name} (test scaffolding, loopback only)
protocols = {protocols}
listen = 127.0.0.1
base_dir = {d.dovecot_run}
state_dir = {d.dir}/dovecot/state
instance_name = mailfixture-{d.server}-{os.getpid()}
log_path = {d.dir}/dovecot.log
ssl = yes
ssl_cert = <{self.tls_dir}/server.pem
ssl_key = <{self.tls_dir}/server.key
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {users}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail_dir}/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {d.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
    user = postfix
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0600
    user = postfix
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{d.name}
}}
{d.dovecot_extra}""")

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Write every file and start the daemons; on any failure stop what was started and re-raise."""
        try:
            write_certificates(self.tls_dir, [d.hostname for d in self.domains])
            for d in self.domains:
                self._write_postfix(d)
                self._write_dovecot(d)
            for d in self.domains:
                self._started.append(d)
                self._run([self.dovecot, "-c", str(d.dovecot_conf)])
                self._run([self.postfix, "-c", str(d.postfix_dir), "start"])
            for d in self.domains:
                for port in (d.smtp_port, d.submission_port, d.imap_port):
                    wait_for_port(port, up=True)
        except BaseException:
            self.stop()
            raise

    def stop(self, keep_logs_in: Path | None = None) -> None:
        """Stop every daemon (also after a failed start), keep the logs if asked, remove the tree.

        Like ``postfix stop`` (SIGTERM to the master, which stops its children), but all masters at once
        and waiting for each to exit, then SIGKILL for any that hangs; the same for the Dovecot masters.
        """
        pids = [self._pid(d.dir / "queue" / "pid" / "master.pid") for d in self._started]
        pids += [self._pid(d.dovecot_run / "master.pid") for d in self._started]
        self._terminate([pid for pid in pids if pid is not None])
        self._started.clear()
        if keep_logs_in is not None:
            for d in self.domains:
                for log in ("postfix.log", "dovecot.log"):
                    if (d.dir / log).exists():
                        keep_logs_in.mkdir(parents=True, exist_ok=True)
                        shutil.copy(d.dir / log, keep_logs_in / f"{d.server}-{log}")
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _pid(path: Path) -> int | None:
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _terminate(pids: list[int], timeout: float = 10.0) -> None:
        """SIGTERM the master processes ``pids`` (started by this lab), wait, SIGKILL what is left."""
        alive = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
                alive.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in alive if _exists(pid)]
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _run(self, cmd: list[str]) -> None:
        # Output goes to a file, not a pipe: the daemons keep inherited pipes open and a read would hang.
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False, timeout=60
            )
            if proc.returncode != 0:
                out.seek(0)
                text = out.read().decode(errors="replace").strip()
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {text}")

    # ---------------------------------------------------------------------------------------- knobs

    def set_route(self, src: str, dst: str, port: int) -> None:
        """Point ``src``'s transport-map route for ``dst`` at ``port`` and reload ``src``'s Postfix."""
        d = self.domain(src)
        d.routes[dst] = port
        self._write_postfix(d, d.routes)
        self._reload_postfix(d)

    def restore(self) -> None:
        """Undo the knobs: correct routes, IMAP up, empty mail queues (only what changed, to stay fast)."""
        for d in self.domains:
            # The queue first: once the route is fixed, a deferred test message would be delivered.
            queue = d.dir / "queue"
            if any(
                f for sub in ("incoming", "active", "deferred", "hold") for _, _, f in os.walk(queue / sub)
            ):
                self._run([self.postsuper, "-c", str(d.postfix_dir), "-d", "ALL"])
            if d.routes:
                d.routes.clear()
                self._write_postfix(d)
                self._reload_postfix(d)
            if not d.imap_enabled:
                self.start_imap(d.name)

    def _reload_postfix(self, d: LabDomain) -> None:
        self._run([self.postfix, "-c", str(d.postfix_dir), "reload"])

    def stop_imap(self, name: str) -> None:
        """Take ``name``'s IMAP listener away (Dovecot reload without imap); LMTP and SASL stay up."""
        self._set_imap(name, enabled=False)

    def start_imap(self, name: str) -> None:
        """Bring ``name``'s IMAP listener back."""
        self._set_imap(name, enabled=True)

    def _set_imap(self, name: str, *, enabled: bool) -> None:
        d = self.domain(name)
        d.imap_enabled = enabled
        self._write_dovecot(d)
        pid = self._pid(d.dovecot_run / "master.pid")
        if pid is None:
            raise RuntimeError(f"Dovecot of {name} is not running")
        os.kill(pid, signal.SIGHUP)  # reload: re-reads dovecot.conf, adds/removes listeners
        # Idle smtpd processes keep their SASL connection to the old auth process, which Dovecot kills a few
        # seconds later; a Postfix reload makes them reconnect to the new one (DMS reloads both, too).
        self._reload_postfix(d)
        wait_for_port(d.imap_port, up=enabled)

    # --------------------------------------------------------------------------------- mailbox i/o

    def log(self, name: str, program: str) -> str:
        """The log of ``name``'s ``postfix`` or ``dovecot`` so far."""
        return (self.domain(name).dir / f"{program}.log").read_text(errors="replace")

    def imap(self, name: str) -> imaplib.IMAP4:
        """A logged-in IMAP session on ``name``'s account (the caller logs out)."""
        d = self.domain(name)
        conn = LabIMAP("127.0.0.1", d.imap_port, timeout=10)
        conn.login(d.user, d.password)
        return conn

    def append(self, name: str, subject: str, flags: str = "", mailbox: str = "INBOX") -> None:
        """Put a message with ``subject`` (and IMAP ``flags``, e.g. ``\\Deleted``) into a mailbox of
        ``name``'s account, creating the mailbox if needed."""
        d = self.domain(name)
        raw = (
            f"From: someone@elsewhere.invalid\r\nTo: {d.user}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@elsewhere.invalid>\r\n\r\nleft alone by the check\r\n"
        )
        conn = self.imap(name)
        try:
            if mailbox != "INBOX":
                conn.create(mailbox)  # NO when it exists already: fine
            typ, data = conn.append(mailbox, f"({flags})" if flags else None, None, raw.encode())
            if typ != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
        finally:
            conn.logout()

    def messages(self, name: str, mailbox: str = "INBOX") -> list[tuple[str, str]]:
        """``(subject, flags)`` of every message in a mailbox of ``name``'s account, read with EXAMINE."""
        conn = self.imap(name)
        try:
            typ, data = conn.select(mailbox, readonly=True)
            if typ != "OK" or data == [b"0"]:
                return []
            typ, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            if typ != "OK":
                raise RuntimeError(f"FETCH failed: {data!r}")
            result = []
            for item in data:
                if isinstance(item, tuple):
                    meta = item[0].decode()
                    flags = meta[meta.index("FLAGS (") + 7 :].split(")")[0]
                    flags = " ".join(f for f in flags.split() if f != "\\Recent")  # session-only flag
                    subject = item[1].decode().replace("Subject:", "").strip()
                    result.append((subject, flags))
            return sorted(result)
        finally:
            conn.logout()

    def delete_mailbox(self, name: str, mailbox: str) -> None:
        """Remove a (non-INBOX) mailbox of ``name``'s account with everything in it."""
        conn = self.imap(name)
        try:
            conn.delete(mailbox)
        finally:
            conn.logout()

    def outputs(self) -> dict:
        """The lab as stack outputs (the ``verify`` output of schema 1 that ``tools.verify`` reads)."""
        return {
            "verify": {
                "schema": 1,
                "stack": "mailfixture",
                "domains": [
                    {
                        "domain": d.name,
                        "server": d.server,
                        "hostname": d.hostname,
                        "host": "127.0.0.1",
                        "ports": {"smtp": d.smtp_port, "submission": d.submission_port, "imap": d.imap_port},
                        "tls": "none",
                        "account": {"address": d.user, "password": d.password},
                        "webmail": None,
                    }
                    for d in self.domains
                ],
            }
        }
