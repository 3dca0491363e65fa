"""The stack of the recall tests: slapd, Dovecot with the audit and usage
plugins, mailkeep-auditd, mailkeep-recall in Postfix, an smtp-sink for
the outside world, and `mailkeep recall release -w` releasing undo-send
holds. Mail is sent as users send it: SMTP AUTH to Postfix."""
import email.utils
import json
import os
import subprocess
import time

import mkstack
import auditenv
from auditenv import AuditStack
from archiveenv import JournalMilter
from milterenv import BUILDDIR, MAILKEEP, Milter, write

RECALL = os.path.join(BUILDDIR, 'milters', 'recall', 'mailkeep-recall')
PASSWORD = mkstack.DEMO_PASSWORD


class RecallMilter(Milter):
    binary = RECALL
    name = 'mailkeep-recall'

    def __init__(self, workdir, stack, extra=''):
        super().__init__(workdir, 'recall')
        self.stack = stack
        self.db = self.path('recall.sqlite')
        self.extra = extra
        self.postfix_config = None
        self.write_config()

    def write_config(self, extra=None):
        if extra is not None:
            self.extra = extra
        s, a, d = self.stack.slapd, self.stack.audit, self.stack.dovecot
        # Only authenticated clients are trusted: mail from 127.0.0.1
        # without SMTP AUTH comes "from outside".
        write(self.config,
              '[global]\nlog = stderr\nlog_level = debug\ndirectory = ldap\n'
              'trusted_networks = 192.0.2.0/24\n'
              '[ldap]\nuri = %s\nbase = %s\nbind_dn = %s\nbind_password = %s\n'
              'cache_ttl = 1s\nnegative_cache_ttl = 1s\n'
              '[audit]\nsocket = %s\ndb = %s\n'
              '[recall]\nsocket = inet:%d@127.0.0.1\ndb = %s\n'
              'doveadm = /usr/bin/doveadm -c %s\npostfix_config = %s\n'
              'auth_socket = %s\nmessage_id_domain = recall.example\n%s'
              % (s.uri, s.base_dn, s.service_dn, s.service_pw, a.socket, a.db, self.port,
                 self.db, d.conf_path, self.postfix_config or '/etc/postfix',
                 os.path.join(d.base_dir, 'auth-client'), self.extra))


class RecallStack(AuditStack):
    """AuditStack + Postfix with mailkeep-recall + smtp-sink + the releaser."""

    def __init__(self, workdir, extra='', journal=False):
        """journal: mailkeep-journal in front of mailkeep-recall, as on a
        mail host (Postfix passes a message a milter holds to no later one)."""
        super().__init__(workdir)
        self.sink = mkstack.SmtpSink(workdir)
        self.recall = RecallMilter(workdir, self, extra)
        self.journal = JournalMilter(workdir, self.slapd) if journal else None
        milters = ([self.journal.socket] if journal else []) + [self.recall.socket]
        self.postfix = mkstack.Postfix(workdir, dovecot=self.dovecot, sink=self.sink,
                                       smtpd_milters=', '.join(milters),
                                       non_smtpd_milters=', '.join(milters))
        self.recall.postfix_config = self.postfix.config_dir
        self.releaser = mkstack.Daemon([MAILKEEP, '-c', self.recall.config, 'recall', 'release',
                                        '-w'], workdir=self.recall.dir,
                                       name='recall-release', ready_delay=0.5)

    def start(self):
        super().start()
        try:
            self.recall.write_config()
            self.recall.start()
            if self.journal is not None:
                self.journal.start()
            self.sink.start()
            self.postfix.start()
            self.releaser.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for part in (self.releaser, self.postfix, self.sink, self.recall, self.journal):
            try:
                if part is not None:
                    part.stop()
            except Exception:       # noqa: BLE001 - stop what can be stopped
                pass
        super().stop()

    # --- sending

    def send(self, user, rcpts, subject='recall test', msgid=None, extra_headers='',
             auth=True, xclient=None, data=None):
        """Send as user (SMTP AUTH) to rcpts; returns the Message-ID. Raises
        unless the message was accepted."""
        msgid = msgid or email.utils.make_msgid(domain='example.com')
        if data is None:
            data = ('From: <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n%s'
                    'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
                    'A message that may be recalled.\r\n'
                    % (user, ', '.join('<%s>' % r for r in rcpts), subject,
                       email.utils.formatdate(localtime=True), msgid, extra_headers))
        r = mkstack.send(mkstack.LOOPBACK, self.postfix.smtp_port, user, rcpts, data=data,
                         auth=(user, PASSWORD) if auth else None, xclient=xclient)
        assert r.data and r.data[0] == 250, r.stages
        return msgid

    def wait_delivered(self, user, msgid, count=1, timeout=20):
        """Wait until user's mailbox has count copies of msgid (LMTP done)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.find(user, msgid)) >= count:
                return
            self.postfix.flush()
            time.sleep(0.2)
        raise AssertionError('%s never got %s:\n%s' % (user, msgid, self.postfix.log()[-3000:]))

    def find(self, user, msgid):
        """[(mailbox, uid, flags)] of user's copies of msgid."""
        r = self.dovecot.doveadm('-f', 'tab', 'fetch', '-u', user, 'mailbox uid flags',
                                 'mailbox', '*', 'header', 'message-id', msgid)
        assert r.returncode == 0, r.stderr
        rows = r.stdout.splitlines()[1:]
        return [tuple(line.split('\t')) for line in rows if line]

    # --- the command

    def mailkeep(self, *args, user=None, password=PASSWORD, check=False, timeout=120):
        """mailkeep -c CONFIG ARGS, as user (-a, password on stdin) when given."""
        argv = [MAILKEEP, '-c', self.recall.config] + list(args)
        stdin = None
        if user is not None:
            argv[4:4] = ['-a', user, '-P', '-']
            stdin = password + '\n'
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError('%s: exit %d\n%s%s' % (' '.join(argv), r.returncode, r.stdout,
                                                         r.stderr))
        return r

    def recall_json(self, msgid, user=None, *flags):
        """mailkeep recall -j MSGID: {address: (status, detail)}, and the result."""
        r = self.mailkeep('recall', '-j', *flags, msgid, user=user)
        outcome = {}
        if r.stdout.strip():
            for m in json.loads(r.stdout):
                for rcpt in m['recipients']:
                    outcome[rcpt['address']] = (rcpt['status'], rcpt['detail'])
        return outcome, r

    def records(self, msgid):
        """The recall database's rows for msgid: [(id, owner, queue_id, hold_state)]."""
        import sqlite3
        db = sqlite3.connect('file:%s?mode=ro' % self.recall.db, uri=True)
        try:
            return db.execute('SELECT id, owner, queue_id, hold_state, added_id FROM messages'
                              ' WHERE message_id = ? ORDER BY id', (msgid,)).fetchall()
        finally:
            db.close()

    def queue(self):
        """{queue_id: (queue_name, [recipients])} from postqueue -j."""
        out = self.postfix.postqueue('-j').stdout
        result = {}
        for line in out.splitlines():
            j = json.loads(line)
            result[j['queue_id']] = (j['queue_name'], [r['address'] for r in j['recipients']])
        return result


def running_stack(prefix, extra='', journal=False):
    """A RecallStack, started; stopped and removed after."""
    return auditenv.running_stack(prefix, RecallStack, extra=extra, journal=journal)
