"""The stack of the Dovecot plugin tests: slapd, Dovecot with notify,
mailkeep_audit and mailkeep_usage loaded, and mailkeep-auditd keeping the
audit log and the usage database (tests/harness/mkaudit.py). The helpers
use Dovecot as users and administrators do: IMAP, POP3, LMTP delivery,
doveadm."""
import contextlib
import email.header
import email.utils
import imaplib
import os
import poplib
import shutil
import smtplib
import time

import mkstack
from mkaudit import AuditD, plugin_modules


# doveadm -c re-executes itself with only these of the caller's variables
IMPORT_ENVIRONMENT = 'import_environment = $import_environment MAILKEEP_ADMIN SUDO_USER\n'


class _Session:
    """What the stack knows of a client's session: its ID, from its login
    record, so that ending it can wait for its logout record (the server
    writes it after the client has its answer)."""
    stack = None
    session = None

    def _ended(self):
        if self.stack is not None and self.session:
            self.stack.wait_records(lambda r: r.get('op') == 'logout'
                                    and r.get('session') == self.session)


class IMAP(_Session, imaplib.IMAP4):
    """imaplib's client, with EXAMINE by name; logout() returns once the
    session's logout record is in the log."""

    def examine(self, mailbox='INBOX'):
        return self.select(mailbox, readonly=True)

    def logout(self):
        r = super().logout()
        self._ended()
        return r


class POP3(_Session, poplib.POP3):
    """poplib's client; quit() returns once the session's logout record is
    in the log."""

    def quit(self):
        r = super().quit()
        self._ended()
        return r


def message(subject, msgid=None, size=None, sender='sender@example.net',
            to='someone@example.com'):
    """A message as bytes (CRLF line ends), at least size bytes long when
    size is given. A subject that is not ASCII is encoded (RFC 2047)."""
    try:
        subject.encode('ascii')
    except UnicodeEncodeError:
        subject = email.header.Header(subject, 'utf-8').encode()
    head = ('From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n'
            'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n'
            'Content-Transfer-Encoding: 8bit\r\n\r\n'
            % (sender, to, subject, email.utils.formatdate(localtime=True),
               msgid or email.utils.make_msgid(domain='example.net'))).encode()
    body = b'A message for the audit tests.\r\n'
    if size:
        line = b'x' * 70 + b'\r\n'
        missing = size - len(head) - len(body)
        if missing > 0:
            body += line * (missing // len(line) + 1)
    return head + body


def _message_id(data):
    for line in data.split(b'\r\n'):
        if not line:
            break
        if line.lower().startswith(b'message-id:'):
            return line.split(b':', 1)[1].strip().decode()
    return None


class AuditStack:
    """slapd + Dovecot with our plugins + mailkeep-auditd in workdir."""

    def __init__(self, workdir, plugins=True):
        self.workdir = workdir
        self.slapd = mkstack.Slapd(workdir)
        self.audit = AuditD(os.path.join(workdir, 'auditd'))
        if plugins:
            self.dovecot = mkstack.Dovecot(
                workdir, self.slapd, mail_plugins='notify mailkeep_audit mailkeep_usage',
                plugin_modules=plugin_modules(), plugin_settings=self.audit.plugin_settings(),
                extra_conf=IMPORT_ENVIRONMENT)
        else:
            self.dovecot = mkstack.Dovecot(workdir, self.slapd)
        self.plugins = plugins

    def start(self):
        try:
            self.slapd.start()
            self.audit.start()
            self.dovecot.start()
            # mailkeep usage drives this Dovecot
            self.audit.set_doveadm('/usr/bin/doveadm -c %s' % self.dovecot.conf_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for part in (self.dovecot, self.audit, self.slapd):
            try:
                part.stop()
            except Exception:       # noqa: BLE001 - stop what can be stopped
                pass

    def _last_seq(self):
        """The log's last seq, or None when the daemon cannot be reached."""
        if not self.plugins:
            return None
        try:
            return self.audit.sync()
        except (OSError, AssertionError):
            return None

    def _track(self, client, user, before):
        if before is None:
            return client
        logins = self.wait_records(lambda r: r.get('op') == 'login' and r.get('user') == user
                                   and r['seq'] > before)
        if logins:
            client.stack = self
            client.session = logins[-1].get('session')
        return client

    def imap(self, user, password=mkstack.DEMO_PASSWORD):
        before = self._last_seq()
        c = IMAP(mkstack.LOOPBACK, self.dovecot.imap_port, timeout=30)
        c.login(user, password)
        return self._track(c, user, before)

    def pop3(self, user, password=mkstack.DEMO_PASSWORD):
        before = self._last_seq()
        p = POP3(mkstack.LOOPBACK, self.dovecot.pop3_port, timeout=30)
        p.user(user)
        p.pass_(password)
        return self._track(p, user, before)

    def deliver(self, user, data, sender='sender@example.net'):
        """Deliver over LMTP, then wait for its deliver record, so that
        what the plugins sent about it has reached the daemon."""
        with smtplib.LMTP(mkstack.LOOPBACK, self.dovecot.lmtp_port, timeout=30) as lmtp:
            refused = lmtp.sendmail(sender, [user], data)
        assert not refused, refused
        msgid = _message_id(data)
        if self.plugins and msgid:
            self.wait_records(lambda r: r.get('op') == 'deliver' and r.get('user') == user
                              and r.get('message_id') == msgid)

    def doveadm(self, *args, admin=None):
        """doveadm against our Dovecot, as administrator admin when given
        (MAILKEEP_ADMIN, which the plugin records)."""
        r = self.dovecot.doveadm(*args, env={'MAILKEEP_ADMIN': admin} if admin else None)
        if r.returncode != 0:
            raise AssertionError('doveadm %s: exit %d\n%s%s'
                                 % (' '.join(args), r.returncode, r.stdout, r.stderr))
        return r

    def wait_records(self, predicate, timeout=10):
        """The records that satisfy predicate, once there is one."""
        deadline = time.time() + timeout
        while True:
            self.audit.sync()
            found = [r for r in self.audit.records() if predicate(r)]
            if found or time.time() > deadline:
                return found
            time.sleep(0.1)

    def usage(self, user):
        """{mailbox: (guid, messages, vsize)} as the usage database has it."""
        self.audit.sync()
        rows = self.audit.query('SELECT mailbox, mailbox_guid, messages, vsize FROM '
                                'mailbox_usage WHERE user = ?', user)
        return {name: (guid, messages, vsize) for name, guid, messages, vsize in rows}

    def status(self, user):
        """{mailbox: (guid, messages, vsize)} as Dovecot counts it."""
        out = self.doveadm('-f', 'tab', 'mailbox', 'status', '-u', user,
                           'guid messages vsize', '*').stdout.splitlines()
        result = {}
        header = out[0].split('\t') if out else []
        for line in out[1:]:
            row = dict(zip(header, line.split('\t')))
            result[row['mailbox']] = (row['guid'], int(row['messages']), int(row['vsize']))
        return result


@contextlib.contextmanager
def running_stack(prefix, cls=None, **kw):
    """An AuditStack (or cls, built with workdir and kw) in a new work
    directory, started; stopped and removed after (kept with MK_KEEP=1)."""
    workdir = mkstack.make_workdir(prefix)
    s = (cls or AuditStack)(workdir, **kw)
    try:
        s.start()
        yield s
    finally:
        s.stop()
        if os.environ.get('MK_KEEP') != '1':
            shutil.rmtree(workdir, ignore_errors=True)
