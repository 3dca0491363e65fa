#!/usr/bin/python3
"""IMAP throughput with and without the mailkeep_audit and mailkeep_usage
plugins, in the same run.

    bench_imap.py [SECONDS] [CLIENTS] [WORKLOAD...]

Starts slapd and two Dovecot instances from the same configuration: one
plain, one with notify + mailkeep_audit + mailkeep_usage loaded and
mailkeep-auditd keeping the log and the usage database. Each gets the same
mailboxes (one per client, 300 messages of 2-30 KB). CLIENTS scripted
clients per instance (default 4, each its own user and connection) then
repeat a round of 8 commands for SECONDS (default 20) seconds. The
workloads (default all three):

    read     a user reading mail: SELECT INBOX; UID FETCH 1:* (UID FLAGS);
             the envelope and structure of 20 messages; BODY[] of one and
             BODY.PEEK[] of another; STORE -FLAGS.SILENT \\Seen on the
             first; UID SEARCH SUBJECT; NOOP
    message  SELECT INBOX; UID FETCH (FLAGS RFC822.SIZE BODY.PEEK[]); UID
             STORE +FLAGS and -FLAGS (\\Seen $Work); UID COPY to Work;
             SELECT Work; STORE 1:* +FLAGS \\Deleted; EXPUNGE, each on one
             message
    bulk     the same commands, each on 20 messages: the plugins' worst
             case, every command making 20 or more audit records

MK_BENCH_IMAP_PLUGINS replaces the plugins of the second instance (for
example "notify mailkeep_usage"), to measure one at a time. The two
instances are measured in turn, twice, and the better run of each is
kept. Prints rounds/s and IMAP commands/s for each, the ratio, the
audit records per round, and the daemon's resident memory."""
import os
import random
import socket
import subprocess
import sys
import time
from multiprocessing import Process, Queue

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'harness'))
import mkstack  # noqa: E402
from mkaudit import AuditD, plugin_modules  # noqa: E402

# the demo directory's users, one per client
USERS = [u for u in mkstack.DEMO_USERS if u != 'admin@example.com'][:8]
PASSWORD = 'mailkeep'
MESSAGES = 300
BATCH = 20


class Client:
    """A bare IMAP client: one command at a time, the response read up to
    its tagged line. Lean on purpose, so the client is not what is
    measured."""

    def __init__(self, port, user):
        self.sock = socket.create_connection(('127.0.0.1', port))
        self.buf = b''
        self.tag = 0
        self._line()                    # greeting
        self.cmd('LOGIN "%s" "%s"' % (user, PASSWORD))

    def _line(self):
        while b'\r\n' not in self.buf:
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError('server closed the connection')
            self.buf += data
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def _skip(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError('server closed the connection')
            self.buf += data
        self.buf = self.buf[n:]

    def cmd(self, text):
        self.tag += 1
        tag = b'a%d' % self.tag
        self.sock.sendall(tag + b' ' + text.encode() + b'\r\n')
        while True:
            line = self._line()
            if line.endswith(b'}') and b'{' in line:
                self._skip(int(line[line.rindex(b'{') + 1:-1]))
                continue
            if line.startswith(tag + b' '):
                if not line.startswith(tag + b' OK'):
                    raise RuntimeError('%s: %r' % (text, line))
                return


def message_round(c, first):
    """SELECT, FETCH, STORE, COPY, EXPUNGE, one message at a time."""
    c.cmd('SELECT INBOX')
    c.cmd('UID FETCH %d (FLAGS RFC822.SIZE BODY.PEEK[])' % first)
    c.cmd('UID STORE %d +FLAGS (\\Seen $Work)' % first)
    c.cmd('UID STORE %d -FLAGS (\\Seen $Work)' % first)
    c.cmd('UID COPY %d Work' % first)
    c.cmd('SELECT Work')
    c.cmd('STORE 1:* +FLAGS (\\Deleted)')
    c.cmd('EXPUNGE')
    return 8


def bulk_round(c, first):
    """The same commands on 20 messages each: the plugins' worst case."""
    lo = first
    hi = first + BATCH - 1
    c.cmd('SELECT INBOX')
    c.cmd('UID FETCH %d:%d (FLAGS RFC822.SIZE BODY.PEEK[])' % (lo, hi))
    c.cmd('UID STORE %d:%d +FLAGS (\\Seen $Work)' % (lo, hi))
    c.cmd('UID STORE %d:%d -FLAGS (\\Seen $Work)' % (lo, hi))
    c.cmd('UID COPY %d:%d Work' % (lo, hi))
    c.cmd('SELECT Work')
    c.cmd('STORE 1:* +FLAGS (\\Deleted)')
    c.cmd('EXPUNGE')
    return 8


def read_round(c, first):
    """A user reading mail: most commands make no record."""
    c.cmd('SELECT INBOX')
    c.cmd('UID FETCH 1:* (UID FLAGS)')
    c.cmd('UID FETCH %d:%d (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE)' % (first, first + BATCH - 1))
    c.cmd('UID FETCH %d (BODY[])' % first)
    c.cmd('UID FETCH %d (BODY.PEEK[])' % (first + 1))
    c.cmd('UID STORE %d -FLAGS.SILENT (\\Seen)' % first)
    c.cmd('UID SEARCH SUBJECT "bench %d"' % first)
    c.cmd('NOOP')
    return 8


WORKLOADS = {'read': read_round, 'message': message_round, 'bulk': bulk_round}


def client_main(port, user, seconds, workload, queue):
    c = Client(port, user)
    rounds = commands = 0
    first = 1
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        commands += WORKLOADS[workload](c, first)
        rounds += 1
        first = first + BATCH if first + 2 * BATCH <= MESSAGES else 1
    c.cmd('LOGOUT')
    queue.put((rounds, commands))


def run_clients(port, users, seconds, workload):
    queue = Queue()
    procs = [Process(target=client_main, args=(port, u, seconds, workload, queue))
             for u in users]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - t0
    rounds = sum(r for r, _ in results)
    commands = sum(c for _, c in results)
    return rounds / seconds, commands / seconds, elapsed


def message(rnd, i):
    body = ('Line %d of a message about the quarterly report, 季度報告 第%d行.\r\n'
            % (i, i)) * rnd.randint(20, 400)
    return ('From: sender%d@example.net\r\nTo: someone@example.com\r\nSubject: bench %d\r\n'
            'Date: Mon, 23 Nov 2026 09:00:00 +0800\r\nMessage-ID: <%d.imapbench@example.net>\r\n'
            'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
            % (i, i, i) + body).encode()


def fill(dovecot, users):
    rnd = random.Random(7)
    msgs = [message(rnd, i) for i in range(MESSAGES)]
    for u in users:
        dovecot.doveadm('mailbox', 'create', '-u', u, 'Work', check=True)
        for m in msgs:
            subprocess.run(['doveadm', '-c', dovecot.conf_path, 'save', '-u', u, '-m', 'INBOX'],
                           input=m, check=True, capture_output=True)


def rss_kib(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    n_clients = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    workloads = sys.argv[3:] or ['read', 'message', 'bulk']
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit('bench_imap.py: no workload "%s" (%s)' % (w, ', '.join(WORKLOADS)))
    users = USERS[:n_clients]
    workdir = mkstack.make_workdir('mk-bench-imap-')
    slapd = mkstack.Slapd(workdir)
    slapd.start()
    audit = AuditD(os.path.join(workdir, 'auditd'))
    audit.start()
    plain = mkstack.Dovecot(os.path.join(workdir, 'plain'), slapd)
    with_plugins = mkstack.Dovecot(
        os.path.join(workdir, 'plugins'), slapd,
        mail_plugins=os.environ.get('MK_BENCH_IMAP_PLUGINS', 'notify mailkeep_audit mailkeep_usage'), plugin_modules=plugin_modules(),
        plugin_settings=audit.plugin_settings())
    try:
        plain.start()
        with_plugins.start()
        print('filling %d mailboxes of %d messages in each instance...' % (len(users), MESSAGES))
        fill(plain, users)
        fill(with_plugins, users)
        audit.sync()
        print('%d clients, %d s per run, best of 2 runs each' % (n_clients, seconds))
        for workload in workloads:
            before = audit.records_count()
            results = {'plain': [], 'plugins': []}
            for _ in range(2):
                for name, dc in (('plain', plain), ('plugins', with_plugins)):
                    print('run: %s %s' % (workload, name), file=sys.stderr, flush=True)
                    results[name].append(run_clients(dc.imap_port, users, seconds, workload))
            best = {k: max(v, key=lambda r: r[0]) for k, v in results.items()}
            audit.sync()
            records = audit.records_count() - before
            rounds = sum(r[0] for r in results['plugins']) * seconds
            print('workload "%s": %s' % (workload, WORKLOADS[workload].__doc__))
            print('  %-28s %10s %12s' % ('', 'rounds/s', 'commands/s'))
            for name, label in (('plain', 'Dovecot'),
                                ('plugins', 'Dovecot + audit + usage')):
                r = best[name]
                print('  %-28s %10.1f %12.1f' % (label, r[0], r[1]))
            print('  ratio: %.1f%% of plain Dovecot; %.1f audit records per round'
                  % (100.0 * best['plugins'][0] / best['plain'][0], records / max(rounds, 1)))
        print('mailkeep-auditd peak RSS: %.1f MiB' % (rss_kib(audit.pid()) / 1024.0))
    finally:
        with_plugins.stop()
        plain.stop()
        audit.stop()
        slapd.stop()
        if os.environ.get('MK_KEEP') != '1':
            mkstack._remove_workdir(workdir)


if __name__ == '__main__':
    main()
