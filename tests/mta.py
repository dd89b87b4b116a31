"""Real MTAs for the bounce-handling tests: a private Postfix relay that returns RFC 3464 DSNs, and a
private Dovecot IMAP server. Each runs from its own config under the test's tmp_path, on free loopback
ports, and is stopped (its processes gone) when the ``with`` block ends, even if the test failed.

Debian's packages come from ``bash tests/install-mta.sh``; without them a test calls ``need()`` (skip
locally, fail in CI). Postfix follows /work/shared/recipes/postfix-bounce-loop.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from newsletter.mailsink import free_port

from .conftest import need

HOST = "127.0.0.1"
_START_ATTEMPTS = 3  # a free port can be taken by another process before the MTA binds it
_SBIN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _tool(name: str, package: str) -> str:
    """The path of an MTA command (root's sbin dirs searched too), or need() when it is not installed."""
    if os.geteuid() != 0:
        need(f"a private {name} needs root (it chowns, chroots and drops privileges)")
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:{_SBIN}")
    if not path:
        need(f"{name} is not installed (bash tests/install-mta.sh installs Debian's {package})")
    assert path
    return path


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} is missing)"


def _wait_for_greeting(port: int, greeting: bytes, goodbye: bytes, timeout: float,
                       exit_code: Callable[[], int | None] = lambda: None) -> bool:
    """True once a server on HOST:port answers a connection with ``greeting`` (then we say ``goodbye``);
    False after ``timeout`` seconds or as soon as ``exit_code()`` says the server has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and exit_code() is None:
        with socket.socket() as sock:
            sock.settimeout(2)
            try:
                sock.connect((HOST, port))
                if sock.recv(512).startswith(greeting):
                    sock.sendall(goodbye)
                    return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def _pids_with_env(key: str, value: str) -> list[int]:
    """Processes whose environment has key=value (how a private MTA's processes are told apart)."""
    wanted = f"{key}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if state != "Z" and wanted in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _reap(pids_of: Callable[[], list[int]], what: str, timeout: float = 10.0) -> None:
    """Wait until ``pids_of()`` lists no process; SIGKILL the stragglers (by pid) after ``timeout``."""
    deadline, killed = time.monotonic() + timeout, False
    while pids := pids_of():
        if time.monotonic() > deadline:
            if killed:
                raise RuntimeError(f"{what}: processes {pids} outlived SIGKILL")
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline, killed = time.monotonic() + 5, True
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------- Postfix

def _postfix_dir(tmp_path: Path) -> Path:
    return tmp_path / "postfix"


def _master_cf(port: int) -> str:
    """Debian's master.cf, its smtpd listening on ``port`` (not 25) and not chrooted."""
    text = Path("/etc/postfix/master.cf").read_text(encoding="utf-8")
    line = re.compile(r"^smtp\s+inet\s+.*\ssmtpd\s*$", re.MULTILINE)
    if not line.search(text):
        raise RuntimeError("/etc/postfix/master.cf has no 'smtp inet ... smtpd' line to change")
    return line.sub(f"{port}  inet  n  -  n  -  -  smtpd", text, count=1)


def _main_cf(root: Path, data: Path, downstream_port: int, bounce_domain: str, receiver_port: int,
             queue_lifetime: str) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {data}
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
inet_interfaces = {HOST}
inet_protocols = ipv4
myhostname = mta.test.example
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
relayhost = [{HOST}]:{downstream_port}
transport_maps = inline:{{ {{ {bounce_domain} = smtp:[{HOST}]:{receiver_port} }} }}
smtp_tls_security_level = none

# Deferred (4xx) mail is retried every second and expires after queue_lifetime; a "delayed" DSN
# goes out after delay_warning_time, a "failed" one when the lifetime is up.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 1s
maximal_queue_lifetime = {queue_lifetime}
bounce_queue_lifetime = {queue_lifetime}
delay_warning_time = 2s
bounce_template_file = {root}/etc/bounce.cf
"""


def _bounce_templates(postfix: str) -> str:
    """Postfix's built-in DSN texts with the delay notice in seconds: its "$delay_warning_time_hours hour(s)"
    and "$maximal_queue_lifetime_days day(s)" come out as 0 with second-long times, and bounce logs warnings."""
    postconf = str(Path(postfix).with_name("postconf"))
    with tempfile.TemporaryDirectory() as empty:
        (Path(empty) / "main.cf").touch()
        text = subprocess.run([postconf, "-c", empty, "-t"], capture_output=True, text=True, check=True,
                              timeout=30, stdin=subprocess.DEVNULL).stdout
    return (text.replace("$delay_warning_time_hours hour(s)", "$delay_warning_time_seconds second(s)")
                .replace("$maximal_queue_lifetime_days day(s)", "$maximal_queue_lifetime_seconds second(s)"))


def _postfix(postfix: str, conf: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([postfix, "-c", str(conf), command], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@contextmanager
def postfix_relay(tmp_path: Path, downstream_port: int, bounce_domain: str, receiver_port: int, *,
                  queue_lifetime: str = "30s") -> Iterator[int]:
    """A private Postfix on a free loopback port (yielded): it relays all mail to 127.0.0.1:downstream_port,
    and mail for ``bounce_domain`` (the DSNs it writes to senders there) to 127.0.0.1:receiver_port.

    Config, queue and log (``maillog``) live in tmp_path/postfix; ``flush(tmp_path)`` retries deferred mail.
    The data_directory (master.lock) is a temp dir of its own outside tmp_path, removed afterwards: the
    master opens it as user postfix, who may not walk pytest's tmp_path (its parents are mode 0700).
    """
    postfix = _tool("postfix", "postfix")
    root = _postfix_dir(tmp_path)
    conf = root / "etc"
    if root.exists():
        raise RuntimeError(f"{root} exists: one postfix_relay per tmp_path")
    for folder in (conf, root / "spool"):
        folder.mkdir(parents=True)

    def ours() -> list[int]:
        return _pids_with_env("MAIL_CONFIG", str(conf))

    data = Path(tempfile.mkdtemp(prefix="mta-postfix-data-"))
    try:
        shutil.chown(data, user="postfix")
        (conf / "bounce.cf").write_text(_bounce_templates(postfix), encoding="utf-8")
        (conf / "main.cf").write_text(
            _main_cf(root, data, downstream_port, bounce_domain, receiver_port, queue_lifetime), encoding="utf-8")
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port(HOST)
            (conf / "master.cf").write_text(_master_cf(port), encoding="utf-8")
            started = _postfix(postfix, conf, "start")
            if started.returncode == 0 and _wait_for_greeting(port, b"220 ", b"QUIT\r\n", 10):
                break
            log = _tail(root / "maillog")
            if started.returncode == 0 or "Address already in use" not in log or attempt == _START_ATTEMPTS:
                raise RuntimeError(f"postfix -c {conf} start failed (exit {started.returncode}, port {port}):\n"
                                   f"{started.stdout}{started.stderr}\n--- {root / 'maillog'}:\n{log}")
            # another process took the free port between free_port() and bind(): try another
        yield port
    finally:
        if (root / "spool" / "pid" / "master.pid").exists():
            _postfix(postfix, conf, "stop")
        _reap(ours, f"postfix -c {conf}")
        shutil.rmtree(data, ignore_errors=True)


def flush(tmp_path: Path) -> None:
    """Ask the Postfix that ``postfix_relay(tmp_path, ...)`` runs to retry its deferred mail now."""
    conf = _postfix_dir(tmp_path) / "etc"
    result = _postfix(_tool("postfix", "postfix"), conf, "flush")
    if result.returncode != 0:
        raise RuntimeError(f"postfix -c {conf} flush: {result.stdout}{result.stderr}")


# ---------------------------------------------------------------------------------------------- Dovecot

MAIL_USER = "mail"  # Debian's uid/gid 8: Dovecot refuses to run a mail process as root
_last_stamp = 0  # the last Maildir file name's leading number (Imap.deliver)


@dataclass
class Imap:
    """Where a private Dovecot listens (plain IMAP, no TLS), its one user, and that user's Maildir."""

    host: str
    port: int
    user: str
    password: str
    maildir: Path

    def deliver(self, raw: bytes) -> None:
        """Put a message into the user's INBOX (Maildir delivery: write in tmp/, rename into new/).

        Messages get IMAP sequence numbers in the order they were delivered: Dovecot numbers new files
        by the number their name starts with, here a nanosecond stamp that only goes up.
        """
        global _last_stamp
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        name = f"{_last_stamp}.P{os.getpid()}R{uuid.uuid4().hex}.mta-test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(raw)
        shutil.chown(tmp, user=MAIL_USER, group=MAIL_USER)
        os.rename(tmp, self.maildir / "new" / name)


def _dovecot_conf(root: Path, instance: str, port: int, passwd: Path) -> str:
    # Running as root here, with tmp_path (under /tmp/pytest-of-root, mode 0700) closed to other users:
    # - imap-login must not run as root: default_login_user = dovenull, chrooted in base_dir/login;
    # - auth reads the passwd-file as root (default_internal_user = root);
    # - the imap process must not run as root either ("Mail access not allowed for root"), and the
    #   userdb must not return uid 0: it runs as Debian's "mail" user (first_valid_uid/gid lowered to 8),
    #   chrooted (as root, before it drops privileges) into root/jail, so it never walks tmp_path's
    #   closed parents. Inside the jail the user's home is /home/USER, its INBOX ~/Maildir.
    return f"""\
base_dir = {root}/run
state_dir = {root}/state
instance_name = {instance}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = root
default_internal_group = root
default_login_user = dovenull
first_valid_uid = 8
first_valid_gid = 8
mail_uid = {MAIL_USER}
mail_gid = {MAIL_USER}
mail_chroot = {root}/jail
valid_chroot_dirs = {root}/jail
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = home=/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@contextmanager
def dovecot_imap(tmp_path: Path, user: str = "reader", password: str = "secret") -> Iterator[Imap]:
    """A private Dovecot serving IMAP on a free loopback port for one user whose INBOX is a Maildir in tmp_path.

    It runs in the foreground (``dovecot -F -c CONF``) as this process's child; config and log
    (``dovecot.log``) live in tmp_path/dovecot.
    """
    dovecot = _tool("dovecot", "dovecot-imapd")
    root = tmp_path / "dovecot"
    if root.exists():
        raise RuntimeError(f"{root} exists: one dovecot_imap per tmp_path")
    home = root / "jail" / "home" / user
    maildir = home / "Maildir"
    for folder in (root / "run", root / "state", maildir / "cur", maildir / "new", maildir / "tmp"):
        folder.mkdir(parents=True)
    for path in (home, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
        shutil.chown(path, user=MAIL_USER, group=MAIL_USER)
    passwd = root / "passwd"
    passwd.write_text(f"{user}:{{PLAIN}}{password}::::::\n", encoding="utf-8")
    instance = f"mta-test-{uuid.uuid4().hex[:12]}"
    conf, log, stderr_log = root / "dovecot.conf", root / "dovecot.log", root / "stderr.log"

    def ours() -> list[int]:
        return _pids_with_title(f"dovecot-{instance}/")

    master: subprocess.Popen[bytes] | None = None
    try:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port(HOST)
            conf.write_text(_dovecot_conf(root, instance, port, passwd), encoding="utf-8")
            with open(stderr_log, "wb") as stderr:
                master = subprocess.Popen([dovecot, "-F", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                          stdout=stderr, stderr=subprocess.STDOUT)
            if _wait_for_greeting(port, b"* OK", b"a LOGOUT\r\n", 10, master.poll):
                break
            _stop_dovecot(master)
            output = _tail(stderr_log)
            if "Address already in use" not in output or attempt == _START_ATTEMPTS:
                raise RuntimeError(f"dovecot -c {conf} did not start (exit {master.returncode}, port {port}):\n"
                                   f"{output}\n--- {log}:\n{_tail(log)}")
            # another process took the free port between free_port() and listen(): try another
        yield Imap(host=HOST, port=port, user=user, password=password, maildir=maildir)
    finally:
        if master is not None:
            _stop_dovecot(master)
        _reap(ours, f"dovecot -c {conf}")  # children that outlived the master (there should be none)


def _stop_dovecot(master: subprocess.Popen[bytes]) -> None:
    """SIGTERM the master (it stops its children first) and wait for it; SIGKILL it after 10 s."""
    if master.poll() is None:
        master.terminate()
    try:
        master.wait(timeout=10)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait(timeout=5)


def _pids_with_title(prefix: str) -> list[int]:
    """Live processes whose command line starts with ``prefix`` (Dovecot names its children
    "dovecot-INSTANCE/SERVICE")."""
    wanted = prefix.encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and cmdline.startswith(wanted):
            pids.append(int(entry.name))
    return pids
