"""A real Dovecot (IMAP + POP3) started from a config in a temp folder, on free loopback ports.

Needs the Debian packages ``dovecot-imapd`` and ``dovecot-pop3d`` (``scripts/test``
installs them when run as root). Runs as root (mail owned by a ``vmail`` system
user, created if missing) or as an ordinary user (everything owned by that user).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from postroom.sandbox.certs import CertificateSet, make_certificates
from postroom.transports.imap.utf7 import encode_mailbox

__all__ = ["SHARED_PASSWORD", "Dovecot", "DovecotNotInstalled", "find_dovecot", "free_port"]

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"])


#: Password of every mailbox not listed in ``users`` (see :meth:`Dovecot.add_user`).
SHARED_PASSWORD = "s3cret-Pa55"


class DovecotNotInstalled(RuntimeError):
    """Dovecot is not on this machine."""


def find_dovecot() -> tuple[str, str]:
    """Paths of ``dovecot`` and ``doveadm``, or :class:`DovecotNotInstalled` saying how to get them."""
    dovecot = shutil.which("dovecot", path=_SBIN_PATH)
    doveadm = shutil.which("doveadm", path=_SBIN_PATH)
    if not dovecot or not doveadm:
        raise DovecotNotInstalled(
            "Dovecot is not installed: run scripts/test as root, or install the packages "
            "dovecot-imapd and dovecot-pop3d (Debian/Ubuntu) / dovecot (Homebrew, Fedora)"
        )
    return dovecot, doveadm


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Dovecot:
    """One running Dovecot instance. Use :meth:`start`; stop with :meth:`stop`."""

    folder: Path
    tls: bool = True
    users: dict[str, str] = field(default_factory=lambda: {"bot@example.test": "s3cret-Pa55"})
    ports: dict[str, int] = field(default_factory=dict)
    certs: CertificateSet | None = None
    extra: str = ""
    #: The hierarchy separator of the inbox namespace: ``/``, or ``.`` as many servers have.
    separator: str = "/"
    #: RFC 7662 endpoint (with client credentials in the URL) for XOAUTH2/OAUTHBEARER logins.
    oauth_introspection_url: str | None = None
    _process: subprocess.Popen[bytes] | None = None
    _uid: int = 0
    _gid: int = 0

    @classmethod
    def start(
        cls,
        *,
        tls: bool = True,
        users: dict[str, str] | None = None,
        extra_config: str = "",
        oauth_introspection_url: str | None = None,
        separator: str = "/",
        certs: CertificateSet | None = None,
    ) -> Dovecot:
        """Start an instance in a fresh temp folder (removed again by :meth:`stop`).

        The folder is world-traversable (0755) because Dovecot's auth and mail
        processes run as other users than the one that starts it.
        """
        folder = Path(tempfile.mkdtemp(prefix="postroom-dovecot-"))
        folder.chmod(0o755)
        instance = cls(
            folder=folder,
            tls=tls,
            users=users or {"bot@example.test": "s3cret-Pa55"},
            extra=extra_config,
            oauth_introspection_url=oauth_introspection_url,
            separator=separator,
            certs=certs,
        )
        try:
            instance._launch()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return instance

    # -- setup ---------------------------------------------------------------------------

    def _launch(self) -> None:
        dovecot, _ = find_dovecot()
        self.folder.mkdir(parents=True, exist_ok=True)
        internal_user, login_user, mail_user = self._accounts()
        entry = pwd.getpwnam(mail_user)
        self._uid, self._gid = entry.pw_uid, entry.pw_gid
        if self.tls and self.certs is None:  # given: another instance's, so one CA serves both
            self.certs = make_certificates(self.folder / "tls", ("localhost",))
        names = ["imap", "pop3", "lmtp"] + (["imaps", "pop3s"] if self.tls else [])
        self.ports = {name: free_port() for name in names}
        users_file = self.folder / "users"
        lines = []
        for user, password in self.users.items():
            home = self.home(user)
            for sub in ("cur", "new", "tmp"):
                (home / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
            lines.append(f"{user}:{{PLAIN}}{password}:{self._uid}:{self._gid}::{home}::")
        users_file.write_text("\n".join(lines) + "\n")
        self._chown(self.folder / "mail")
        (self.folder / "dovecot.conf").write_text(self._config(internal_user, login_user))
        log = (self.folder / "dovecot.stderr").open("wb")
        self._process = subprocess.Popen(
            [dovecot, "-F", "-c", str(self.folder / "dovecot.conf")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        self._wait_ready()

    def _accounts(self) -> tuple[str, str, str]:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid()).pw_name
            return me, me, me
        try:
            pwd.getpwnam("vmail")
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "vmail"],
                check=True,
                env={**os.environ, "PATH": _SBIN_PATH},
            )
        return "dovecot", "dovenull", "vmail"

    def _config(self, internal_user: str, login_user: str) -> str:
        d = self.folder
        listeners_imap = f"inet_listener imap {{\n    port = {self.ports['imap']}\n  }}\n"
        listeners_pop3 = f"inet_listener pop3 {{\n    port = {self.ports['pop3']}\n  }}\n"
        if self.tls:
            listeners_imap += f"  inet_listener imaps {{\n    port = {self.ports['imaps']}\n    ssl = yes\n  }}\n"
            listeners_pop3 += f"  inet_listener pop3s {{\n    port = {self.ports['pop3s']}\n    ssl = yes\n  }}\n"
        tls_lines = (
            f"ssl = yes\nssl_cert = <{self.certs.cert_file}\nssl_key = <{self.certs.key_file}\n"
            if self.certs
            else "ssl = no\n"
        )
        return f"""# written by postroom's test suite
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = imap pop3 lmtp
postmaster_address = postmaster@example.test
default_internal_user = {internal_user}
default_internal_group = {internal_user if os.geteuid() != 0 else "dovecot"}
default_login_user = {login_user}
first_valid_uid = {self._uid}
last_valid_uid = {self._uid}
first_valid_gid = 0
{tls_lines}disable_plaintext_auth = no
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth_introspection_url else ""}
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:~/Maildir
mail_fsync = never
pop3_uidl_format = %08Xu%08Xv
namespace inbox {{
  inbox = yes
  separator = {self.separator}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
  mechanisms = plain login
}}
# any other user name logs in with the shared password: a fresh mailbox per test, no reload needed
passdb {{
  driver = static
  args = password={SHARED_PASSWORD}
  mechanisms = plain login
}}
{self._oauth_passdb()}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={self._uid} gid={self._gid} home={d}/mail/%u allow_all_users=yes
}}
service imap-login {{
  {listeners_imap}}}
service pop3-login {{
  {listeners_pop3}}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.ports["lmtp"]}
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{self.extra}
"""

    def _oauth_passdb(self) -> str:
        """Dovecot's ``oauth2`` passdb asking the test authorization server (RFC 7662, POST)."""
        if not self.oauth_introspection_url:
            return ""
        conf = self.folder / "oauth2.conf"
        conf.write_text(
            f"introspection_mode = post\nintrospection_url = {self.oauth_introspection_url}\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
        )
        conf.chmod(0o644)
        return f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {conf}\n}}\n"

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending and time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start:\n{self.log()}")
            for port in list(pending):
                with socket.socket() as sock:
                    sock.settimeout(0.2)
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            time.sleep(0.05)
        if pending:
            self.stop()
            raise RuntimeError(f"dovecot did not listen on {sorted(pending)} within {timeout} s:\n{self.log()}")

    # -- use -----------------------------------------------------------------------------

    def add_user(self, user: str) -> str:
        """A new, empty mailbox; it logs in with :data:`SHARED_PASSWORD`. Returns the password."""
        home = self.home(user)
        for sub in ("cur", "new", "tmp"):
            (home / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
        self._chown(home.parent)
        return SHARED_PASSWORD

    def home(self, user: str) -> Path:
        return self.folder / "mail" / user

    def deliver(
        self, user: str, raw: bytes, *, folder: str = "INBOX", seen: bool = False, received: dt.datetime | None = None
    ) -> Path:
        """Put one message into ``folder`` (``"A/B"`` for nested) by writing the Maildir file; ``received`` is
        its INTERNALDATE (Dovecot reads it from the file's modification time)."""
        maildir = self.home(user) / "Maildir"
        if folder.upper() != "INBOX":
            maildir = maildir / ("." + encode_mailbox(folder).replace("/", "."))  # Maildir++ keeps mUTF-7 on disk
            for sub in ("cur", "new", "tmp"):
                (maildir / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.postroom-tests,S={len(raw)}"
        target = maildir / ("cur" if seen else "new") / (name + (":2,S" if seen else ""))
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        if received is not None:
            os.utime(tmp, (received.timestamp(), received.timestamp()))
        tmp.rename(target)
        self._chown(self.home(user))
        return target

    def deliver_many(self, user: str, messages: Iterable[bytes], *, folder: str = "INBOX") -> int:
        """Write many messages at once (bulk: one ownership pass at the end). Returns the count."""
        maildir = self.home(user) / "Maildir"
        if folder.upper() != "INBOX":
            maildir = maildir / ("." + encode_mailbox(folder).replace("/", "."))
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        count = 0
        base = time.time() - 86400
        for count, raw in enumerate(messages, start=1):
            name = f"{int(base) + count}.M{count}P{os.getpid()}.postroom-bench,S={len(raw)}"
            path = maildir / "cur" / (name + ":2,")
            path.write_bytes(raw)
            os.utime(path, (base + count, base + count))  # internal date: one second apart, in order
        self._chown(self.home(user))
        return count

    def renumber(self, user: str, folder: str = "INBOX") -> None:
        """Give ``folder`` a new UIDVALIDITY and new UIDs, as a restored or rebuilt mailbox gets: the mail
        stays (same files, same dates), Dovecot's UID list and indexes go."""
        with contextlib.suppress(subprocess.CalledProcessError):  # 68: nobody was logged in
            self.kick(user)
        maildir = self.home(user) / "Maildir"
        if folder.upper() != "INBOX":
            maildir = maildir / ("." + encode_mailbox(folder).replace("/", "."))
        for path in maildir.iterdir():
            if path.name.startswith(("dovecot-uidlist", "dovecot.index", "dovecot-keywords")):
                path.unlink(missing_ok=True)  # a lock file Dovecot removes meanwhile
        time.sleep(1.1)  # UIDVALIDITY is a timestamp: the next one must differ

    def kick(self, user: str) -> None:
        """Drop every connection of ``user``, as an admin or an idle timeout would."""
        _, doveadm = find_dovecot()
        config = str(self.folder / "dovecot.conf")
        subprocess.run([doveadm, "-c", config, "kick", user], check=True, capture_output=True)
        # kick signals the processes and returns: wait until they are gone, or a command may still slip through
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            who = subprocess.run([doveadm, "-c", config, "who", user], capture_output=True, text=True)
            if user not in who.stdout:
                return
            time.sleep(0.02)

    def log(self) -> str:
        parts = []
        for name in ("dovecot.log", "dovecot.stderr"):
            path = self.folder / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _chown(self, path: Path) -> None:
        if os.geteuid() != 0 or not path.exists():
            return
        for root, dirs, files in os.walk(path):
            for name in [root, *(str(Path(root) / n) for n in dirs + files)]:
                with contextlib.suppress(FileNotFoundError):  # Dovecot's own lock files come and go meanwhile
                    os.chown(name, self._uid, self._gid)
