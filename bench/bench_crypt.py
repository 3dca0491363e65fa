#!/usr/bin/python3
"""mailkeep_crypt: LMTP delivery and IMAP FETCH against plain Dovecot and
against Dovecot's own mail_crypt, in the same run.

    bench_crypt.py [SECONDS] [CLIENTS] [WORKLOAD...]

Starts slapd and Dovecot 2.3 instances from the same configuration (LDAP
users, Maildir, mail_temp_dir on tmpfs, mail_never_cache_fields = *):

    plain        no encryption
    mkcrypt      mail_plugins mailkeep_crypt: a server key, an escrow key
                 (every message has a slot for the user and one for escrow)
    mailcrypt    mail_plugins mail_crypt with global keys (EC P-256,
                 mail_crypt_save_version = 2)
    plain-cache  plain again with Dovecot's index cache on (the default),
                 for the envelope workload only: what turning the cache
                 off costs

Each instance gets the same mailboxes, delivered over LMTP so that each
plugin encrypts its own: one per client, 200 messages of 2-30 KB (text
with some Chinese) with one in ten of about 300 KB (a base64 attachment).
A check then fetches messages back from each instance (they must end with
the bytes delivered, after Dovecot's Return-Path, Delivered-To and
Received, and RFC822.SIZE must be their length), compares the ENVELOPEs
across instances, and looks for the Subjects and a body line in every
file under the encrypted instances' mail directories (they must not be
there; in the plain one they must).

CLIENTS clients (default 4, each its own user and connection) then run
each workload (default all three) for SECONDS seconds (default 10):

    fetch     SELECT INBOX once, then UID FETCH lo:hi (BODY.PEEK[]) over
              batches of 20 messages, round and round: messages/s, MB/s
    envelope  SELECT INBOX once, then UID FETCH 1:* (ENVELOPE) per round
              (every header read from the message, the cache being off):
              rounds/s
    lmtp      one LMTP connection each, one transaction per message, one
              recipient (the client's user), the same mix of sizes:
              messages/s, MB/s

The instances are measured in turn, twice, and the better run of each is
kept. Also printed: the CPU time of all of each instance's Dovecot
processes per message (or round), and the peak RSS of its imap or lmtp
processes. Each run also reports on stderr how much CPU other processes
on the machine took meanwhile (the kernel's writeback of the mail takes
some hundredths of a core; a warning is printed when it is over a fifth
of a core). Needs python3-cryptography (for the escrow key) and
openssl. Takes about 4 minutes at the defaults."""
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing import Process, Queue

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'harness'))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration'))
import mkstack  # noqa: E402
from cryptenv import CryptKeys  # noqa: E402

# the demo directory's users, one per client
USERS = [u for u in mkstack.DEMO_USERS if u != 'admin@example.com'][:8]
PASSWORD = mkstack.DEMO_PASSWORD
BUILDDIR = os.environ.get('MK_BUILDDIR', os.path.join(HERE, '..', 'build'))
PLUGIN = os.path.join(BUILDDIR, 'dovecot-plugins', 'lib90_mailkeep_crypt_plugin.so')
MESSAGES = 200                  # in each user's INBOX
BATCH = 20
LMTP_POOL = 60                  # distinct messages the LMTP clients cycle through
SENDER = 'bench@example.net'
LABELS = {'plain': 'Dovecot', 'mkcrypt': '+ mailkeep_crypt', 'mailcrypt': '+ mail_crypt',
          'plain-cache': 'Dovecot, cache on'}

# ----------------------------------------------------------------- messages


def message(rnd, tag):
    """A message of 2-30 KB of text, or (tag % 10 == 9) about 300 KB with a
    base64 attachment. CRLF line ends, dot-stuffing not applied."""
    head = ('From: Sender %d <sender%d@example.net>\r\nTo: <someone@example.com>\r\n'
            'Subject: Quarterly report %s\r\nDate: Mon, 23 Nov 2026 09:00:00 +0800\r\n'
            'Message-ID: <%s@bench.example.net>\r\nMIME-Version: 1.0\r\n'
            % (tag % 97, tag % 97, subject_mark(tag), subject_mark(tag)))
    text = ['Reference %s.\r\n' % body_mark(tag)]
    target = rnd.randint(2000, 30000)
    size = 0
    i = 0
    while size < target:
        line = ('Line %d of a message about the quarterly report, 季度報告 第%d行, '
                'figures for the region.\r\n' % (i, i))
        text.append(line)
        size += len(line.encode())
        i += 1
    text = ''.join(text)
    if tag % 10 != 9:
        return (head + 'Content-Type: text/plain; charset=utf-8\r\n'
                'Content-Transfer-Encoding: 8bit\r\n\r\n' + text).encode()
    import base64
    blob = base64.encodebytes(rnd.randbytes(220000)).replace(b'\n', b'\r\n').decode()
    return (head + 'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n'
            '--b%d\r\nContent-Type: text/plain; charset=utf-8\r\n'
            'Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n'
            '--b%d\r\nContent-Type: application/pdf; name="report.pdf"\r\n'
            'Content-Disposition: attachment; filename="report.pdf"\r\n'
            'Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--b%d--\r\n'
            % (tag, tag, text, tag, blob, tag)).encode()


MARKS = re.compile(rb'mkcb-(?:subj|body)-\d{5}')


def subject_mark(tag):
    return 'mkcb-subj-%05d' % tag


def body_mark(tag):
    return 'mkcb-body-%05d' % tag


def dot_stuff(data):
    if data.startswith(b'.'):
        data = b'.' + data
    return data.replace(b'\r\n.', b'\r\n..') + b'.\r\n'


# ------------------------------------------------------------ lean clients


class Conn:
    """A socket with a read buffer: lines and literals, without copying the
    buffer for every line, so that the client is not what is measured."""

    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port))
        self.buf = b''
        self.pos = 0

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError('server closed the connection')
        self.buf = self.buf[self.pos:] + data
        self.pos = 0

    def line(self):
        while True:
            i = self.buf.find(b'\r\n', self.pos)
            if i >= 0:
                line = self.buf[self.pos:i]
                self.pos = i + 2
                return line
            self._fill()

    def take(self, n, keep):
        if keep:
            while len(self.buf) - self.pos < n:
                self._fill()
            out = self.buf[self.pos:self.pos + n]
            self.pos += n
            return out
        avail = len(self.buf) - self.pos
        while avail < n:
            n -= avail
            self.buf = self.sock.recv(262144)
            self.pos = 0
            if not self.buf:
                raise ConnectionError('server closed the connection')
            avail = len(self.buf)
        self.pos += n
        return None

    def close(self):
        self.sock.close()


class Imap(Conn):
    def __init__(self, port, user):
        super().__init__(port)
        self.tag = 0
        self.line()                     # greeting
        self.cmd('LOGIN "%s" "%s"' % (user, PASSWORD))

    def cmd(self, text, keep=False):
        """Send a command, read up to its tagged OK. Returns (literals, their
        bytes, the whole response when keep)."""
        self.tag += 1
        tag = b'a%d ' % self.tag
        self.sock.sendall(tag + text.encode() + b'\r\n')
        n = size = 0
        out = []
        while True:
            line = self.line()
            if keep:
                out.append(line + b'\r\n')
            if line.endswith(b'}') and b'{' in line:
                k = int(line[line.rindex(b'{') + 1:-1])
                lit = self.take(k, keep)
                if keep:
                    out.append(lit)
                n += 1
                size += k
                continue
            if line.startswith(tag):
                if not line.startswith(tag + b'OK'):
                    raise RuntimeError('%s: %r' % (text, line))
                return n, size, b''.join(out)


class Lmtp(Conn):
    def __init__(self, port):
        super().__init__(port)
        self.expect(220)
        self.sock.sendall(b'LHLO bench.example.net\r\n')
        self.expect(250)

    def reply(self):
        while True:
            line = self.line()
            if line[3:4] != b'-':
                return int(line[:3]), line

    def expect(self, code):
        got, line = self.reply()
        if got != code:
            raise RuntimeError('LMTP: expected %d, got %r' % (code, line))

    def deliver(self, rcpt, stuffed):
        """One transaction, pipelined: MAIL, RCPT, DATA, the message."""
        self.sock.sendall(b'MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n'
                          % (SENDER.encode(), rcpt.encode()))
        self.expect(250)
        self.expect(250)
        self.expect(354)
        self.sock.sendall(stuffed)
        self.expect(250)

    def quit(self):
        self.sock.sendall(b'QUIT\r\n')
        self.reply()
        self.close()


# ------------------------------------------------------------- workloads


def fetch_client(port, user, seconds, queue):
    c = Imap(port, user)
    c.cmd('SELECT INBOX')
    msgs = size = 0
    lo = 1
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        n, k, _ = c.cmd('UID FETCH %d:%d (BODY.PEEK[])' % (lo, lo + BATCH - 1))
        msgs += n
        size += k
        lo = lo + BATCH if lo + 2 * BATCH - 1 <= MESSAGES else 1
    elapsed = time.monotonic() - t0
    c.cmd('LOGOUT')
    c.close()
    queue.put((msgs / elapsed, size / elapsed, msgs))


def envelope_client(port, user, seconds, queue):
    c = Imap(port, user)
    c.cmd('SELECT INBOX')
    rounds = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        c.cmd('UID FETCH 1:* (ENVELOPE)')
        rounds += 1
    elapsed = time.monotonic() - t0
    c.cmd('LOGOUT')
    c.close()
    queue.put((rounds / elapsed, 0.0, rounds))


def lmtp_client(port, user, seconds, queue, pool, first):
    c = Lmtp(port)
    msgs = size = 0
    i = first
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        raw, stuffed = pool[i % len(pool)]
        c.deliver(user, stuffed)
        msgs += 1
        size += len(raw)
        i += 1
    elapsed = time.monotonic() - t0
    c.quit()
    queue.put((msgs / elapsed, size / elapsed, msgs))


# ---------------------------------------------------- process accounting


def _stat(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            data = f.read().decode('ascii', 'replace')
    except OSError:
        return None
    return data[data.rfind(')') + 2:].split()


def dovecot_cpu(dc):
    """CPU seconds of the instance's master, its children (live ones, and
    the exited ones it has reaped) and their children."""
    ticks = 0
    for pid in [dc.proc.pid] + [p for p, _ in mkstack._descendants(dc.proc.pid)]:
        st = _stat(pid)
        if st is not None:
            ticks += sum(int(x) for x in st[11:15])     # utime stime cutime cstime
    return ticks / os.sysconf('SC_CLK_TCK')


def machine_busy():
    """CPU seconds the whole machine has been busy (all cores)."""
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf('SC_CLK_TCK')


def own_cpu(instances, slapd):
    """CPU seconds of this benchmark: itself and its clients, slapd and
    every Dovecot instance."""
    t = os.times()
    cpu = t.user + t.system + t.children_user + t.children_system
    st = _stat(slapd.proc.pid)
    if st is not None:
        cpu += sum(int(x) for x in st[11:13]) / os.sysconf('SC_CLK_TCK')
    return cpu + sum(dovecot_cpu(dc) for dc in instances.values())


def peak_rss_kib(dc, comm):
    """The largest VmHWM of the instance's processes named comm."""
    best = 0
    for pid, _ in mkstack._descendants(dc.proc.pid):
        try:
            with open('/proc/%d/comm' % pid) as f:
                if f.read().strip() != comm:
                    continue
            with open('/proc/%d/status' % pid) as f:
                for line in f:
                    if line.startswith('VmHWM:'):
                        best = max(best, int(line.split()[1]))
        except OSError:
            pass
    return best


def log_errors(dc):
    lines = [l for l in dc.log().splitlines() if ' Error: ' in l or ' Fatal: ' in l
             or ' Panic: ' in l]
    return '\n'.join(lines[-5:]) or '(nothing in %s)' % dc.log_path


def run_clients(dc, port, users, seconds, target, args=(), comm='imap', per_user=None):
    queue = Queue()
    procs = [Process(target=target,
                     args=(port, u, seconds, queue) + tuple(args) +
                     ((per_user(i),) if per_user else ()))
             for i, u in enumerate(users)]
    cpu0 = dovecot_cpu(dc)
    for p in procs:
        p.start()
    rss = 0
    results = []
    deadline = time.monotonic() + seconds + 120
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=0.25))
        except Exception:
            if time.monotonic() > deadline or \
                    any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError('a client failed; Dovecot says:\n%s' % log_errors(dc))
        rss = max(rss, peak_rss_kib(dc, comm))
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError('a client failed; Dovecot says:\n%s' % log_errors(dc))
    time.sleep(0.3)                     # let the master reap what exited
    cpu = dovecot_cpu(dc) - cpu0
    count = sum(r[2] for r in results)
    return {'rate': sum(r[0] for r in results), 'bytes': sum(r[1] for r in results),
            'cpu_ms': 1000.0 * cpu / max(count, 1), 'rss': rss}


# ------------------------------------------------------------ the stack


def deliver_all(dc, users, msgs):
    """Fill: every user gets msgs in this order (UID i+1 is msgs[i])."""
    stuffed = [dot_stuff(m) for m in msgs]

    def one(user):
        c = Lmtp(dc.lmtp_port)
        for s in stuffed:
            c.deliver(user, s)
        c.quit()

    procs = [Process(target=one, args=(u,)) for u in users]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit('bench_crypt.py: filling %s failed; Dovecot says:\n%s'
                     % (dc.dir, log_errors(dc)))


def mail_crypt_keys(workdir):
    d = os.path.join(workdir, 'mail_crypt-keys')
    os.makedirs(d, mode=0o700)
    priv = os.path.join(d, 'ecprivkey.pem')
    pub = os.path.join(d, 'ecpubkey.pem')
    subprocess.run('openssl ecparam -name prime256v1 -genkey | openssl pkey -out %s' % priv,
                   shell=True, check=True, capture_output=True)
    subprocess.run(['openssl', 'pkey', '-in', priv, '-pubout', '-out', pub],
                   check=True, capture_output=True)
    return {'mail_crypt_global_private_key': '<' + priv,
            'mail_crypt_global_public_key': '<' + pub,
            'mail_crypt_save_version': '2'}


def files_under(path):
    for root, _, names in os.walk(path):
        for n in names:
            yield os.path.join(root, n)


def check(instances, user, msgs):
    """Fetched messages end with what was delivered; sizes agree; the
    ENVELOPEs are the same everywhere; no Subject or body line on disk in
    the encrypted instances. Returns warnings (a failure exits)."""
    warnings = []
    uids = sorted({1, 2, 10, 20, MESSAGES})         # 10 and 20: the large ones
    envelopes = {}
    for name, dc in instances.items():
        c = Imap(dc.imap_port, user)
        c.cmd('SELECT INBOX')
        for uid in uids:
            _, _, resp = c.cmd('UID FETCH %d (RFC822.SIZE BODY.PEEK[])' % uid, keep=True)
            head, _, rest = resp.partition(b'BODY[] {')
            n = int(rest[:rest.index(b'}')])
            body = rest[rest.index(b'}') + 3:][:n]
            size = int(head[head.index(b'RFC822.SIZE ') + 12:].split()[0].rstrip(b')'))
            want = msgs[uid - 1]
            if not body.endswith(want):
                sys.exit('bench_crypt.py: %s: UID %d of %s does not read back as delivered'
                         % (name, uid, user))
            added = body[:-len(want)]
            names = {l.split(b':')[0] for l in added.split(b'\r\n')
                     if l and not l[:1].isspace()}
            if not names <= {b'Return-Path', b'Delivered-To', b'Received'}:
                warnings.append('%s: UID %d: added headers %s' % (name, uid, sorted(names)))
            if size != len(body):
                warnings.append('%s: UID %d: RFC822.SIZE %d, BODY[] has %d bytes'
                                % (name, uid, size, len(body)))
        _, _, envelopes[name] = c.cmd('UID FETCH 1:* (ENVELOPE)', keep=True)
        c.cmd('LOGOUT')
        c.close()
        found = set()
        magic = set()
        for p in files_under(dc.mail_root):
            with open(p, 'rb') as f:
                data = f.read()
            if '/cur/' in p or '/new/' in p:
                magic.add(data[:8])
            found.update(MARKS.findall(data))
        if name.startswith('plain'):
            if len(found) != 2 * MESSAGES:
                sys.exit('bench_crypt.py: %s: the plain markers are not all on disk (%d of %d):'
                         ' the check itself is wrong' % (name, len(found), 2 * MESSAGES))
        elif found:
            sys.exit('bench_crypt.py: %s: %d Subjects or body lines in plain text on disk'
                     % (name, len(found)))
        want_magic = {'mkcrypt': b'\0MKCRYPT', 'mailcrypt': b'CRYPTED\x03'}.get(name)
        if want_magic and magic != {want_magic}:
            sys.exit('bench_crypt.py: %s: message files start with %r' % (name, magic))
    # the tagged OK line says how long the command took: leave it out
    untagged = {n: e[:e.rindex(b'\r\na')] for n, e in envelopes.items()}
    for name, env in untagged.items():
        if env != untagged['plain']:
            warnings.append('%s: ENVELOPE of 1:* differs from plain Dovecot\'s' % name)
    return warnings


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    n_clients = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    workloads = sys.argv[3:] or ['fetch', 'envelope', 'lmtp']
    for w in workloads:
        if w not in ('fetch', 'envelope', 'lmtp'):
            sys.exit('bench_crypt.py: no workload "%s" (fetch, envelope, lmtp)' % w)
    if not os.path.exists(PLUGIN):
        sys.exit('bench_crypt.py: %s is not built' % PLUGIN)
    if not 1 <= n_clients <= len(USERS):
        sys.exit('bench_crypt.py: 1 to %d clients' % len(USERS))
    users = USERS[:n_clients]
    t_start = time.monotonic()
    workdir = mkstack.make_workdir('mk-bench-crypt-')
    # LMTP spools deliveries over 128 KiB and mail_crypt its decrypted
    # copies to mail_temp_dir: tmpfs, as the man page asks, for all.
    tmp = tempfile.mkdtemp(prefix='mk-bench-crypt-', dir='/dev/shm')
    os.chmod(tmp, 0o1777)
    common = 'mail_temp_dir = %s\n' % tmp
    nocache = common + 'mail_never_cache_fields = *\n'
    slapd = mkstack.Slapd(workdir)
    instances = {}
    rnd = random.Random(9)
    msgs = [message(rnd, i) for i in range(MESSAGES)]
    pool = [message(rnd, 1000 + i) for i in range(LMTP_POOL)]
    pool = [(m, dot_stuff(m)) for m in pool]
    try:
        keys = CryptKeys(workdir)
        instances['plain'] = mkstack.Dovecot(os.path.join(workdir, 'plain'), slapd,
                                             extra_conf=nocache)
        instances['mkcrypt'] = mkstack.Dovecot(
            os.path.join(workdir, 'mkcrypt'), slapd, mail_plugins='mailkeep_crypt',
            plugin_modules=[PLUGIN], plugin_settings=keys.plugin_settings(),
            extra_conf=nocache)
        # no plugin_modules: Dovecot's own module directory, where mail_crypt is
        instances['mailcrypt'] = mkstack.Dovecot(
            os.path.join(workdir, 'mailcrypt'), slapd, mail_plugins='mail_crypt',
            plugin_settings=mail_crypt_keys(workdir), extra_conf=nocache)
        if 'envelope' in workloads:
            instances['plain-cache'] = mkstack.Dovecot(os.path.join(workdir, 'plain-cache'),
                                                       slapd, extra_conf=common)
        slapd.start()
        for dc in instances.values():
            dc.start()
        t0 = time.monotonic()
        print('filling %d mailboxes of %d messages (%.1f MB each) in %d instances over LMTP...'
              % (len(users), MESSAGES, sum(map(len, msgs)) / 1e6, len(instances)))
        for dc in instances.values():
            deliver_all(dc, users, msgs)
        print('  took %.0f s' % (time.monotonic() - t0))
        warnings = check(instances, users[0], msgs)
        print('check: messages read back as delivered; no Subject or body line on disk '
              'in the encrypted instances')
        for w in warnings:
            print('  WARNING: %s' % w)
        print('%d clients, %d s per run, best of 2 runs each' % (n_clients, seconds))
        order = ['plain', 'mkcrypt', 'mailcrypt']
        best = {}
        foreign = 0.0
        for workload in workloads:
            names = order + (['plain-cache'] if workload == 'envelope' else [])
            runs = {n: [] for n in names}
            for _ in range(2):
                for n in names:
                    dc = instances[n]
                    print('run: %s %s (at %.0f s)' % (workload, n, time.monotonic() - t_start),
                          file=sys.stderr, end='', flush=True)
                    busy0, own0, w0 = machine_busy(), own_cpu(instances, slapd), time.monotonic()
                    if workload == 'fetch':
                        r = run_clients(dc, dc.imap_port, users, seconds, fetch_client)
                    elif workload == 'envelope':
                        r = run_clients(dc, dc.imap_port, users, seconds, envelope_client)
                    else:
                        r = run_clients(dc, dc.lmtp_port, users, seconds, lmtp_client,
                                        args=(pool,), comm='lmtp',
                                        per_user=lambda i: i * 7)
                    runs[n].append(r)
                    # other processes on the machine during the run, in
                    # cores: the figures are only good when this is near 0
                    r['foreign'] = ((machine_busy() - busy0) - (own_cpu(instances, slapd) - own0)) \
                        / (time.monotonic() - w0)
                    foreign = max(foreign, r['foreign'])
                    print(': %.0f/s, other load %.2f cores' % (r['rate'], r['foreign']),
                          file=sys.stderr, flush=True)
            best[workload] = {n: max(v, key=lambda r: r['rate']) for n, v in runs.items()}
        print()
        columns = [n for n in order + ['plain-cache'] if n in instances]
        widths = {'plain': 14, 'mkcrypt': 18, 'mailcrypt': 16, 'plain-cache': 18}
        print('  %-34s' % '' + ''.join(' %*s' % (widths[n], LABELS[n]) for n in columns))

        def row(label, workload, key, fmt, ratio=True):
            b = best[workload]
            cells = []
            for n in columns:
                cell = ''
                if n in b:
                    cell = fmt % b[n][key]
                    if ratio and n != 'plain' and b['plain'][key]:
                        cell += ' (%3.0f%%)' % (100.0 * b[n][key] / b['plain'][key])
                cells.append(' %*s' % (widths[n], cell))
            print(('  %-34s' % label + ''.join(cells)).rstrip())

        for results in best.values():
            for r in results.values():
                r['mbs'] = r.get('bytes', 0) / 1e6
                r['rss_mib'] = r['rss'] / 1024.0
                r['msgs'] = r['rate'] * MESSAGES
        if 'fetch' in best:
            row('FETCH BODY.PEEK[], messages/s', 'fetch', 'rate', '%.0f')
            row('  MB/s', 'fetch', 'mbs', '%.1f')
            row('  Dovecot CPU ms per message', 'fetch', 'cpu_ms', '%.2f', False)
            row('  imap peak RSS, MiB', 'fetch', 'rss_mib', '%.1f', False)
        if 'envelope' in best:
            row('FETCH 1:* (ENVELOPE), rounds/s', 'envelope', 'rate', '%.1f')
            row('  envelopes/s', 'envelope', 'msgs', '%.0f')
            row('  Dovecot CPU ms per round', 'envelope', 'cpu_ms', '%.1f', False)
            row('  imap peak RSS, MiB', 'envelope', 'rss_mib', '%.1f', False)
        if 'lmtp' in best:
            row('LMTP delivery, messages/s', 'lmtp', 'rate', '%.0f')
            row('  MB/s', 'lmtp', 'mbs', '%.1f')
            row('  Dovecot CPU ms per message', 'lmtp', 'cpu_ms', '%.2f', False)
            row('  lmtp peak RSS, MiB', 'lmtp', 'rss_mib', '%.1f', False)
        if foreign > 0.2:
            print('WARNING: other processes used up to %.2f cores during a run: the figures are'
                  ' disturbed' % foreign)
        print('(%d messages per mailbox, %.1f KB on average; the LMTP pool %.1f KB on average;'
              ' whole run %.0f s)'
              % (MESSAGES, sum(map(len, msgs)) / len(msgs) / 1e3,
                 sum(len(m) for m, _ in pool) / len(pool) / 1e3, time.monotonic() - t_start))
    finally:
        for dc in reversed(list(instances.values())):
            dc.stop()
        slapd.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if os.environ.get('MK_KEEP') != '1':
            mkstack._remove_workdir(workdir)


if __name__ == '__main__':
    main()
