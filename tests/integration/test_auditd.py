"""mailkeep-auditd on its own, through its socket: many clients at once
make one gap-free chain; S is answered only after the records are written
and synced; a full disk keeps every record and holds the clients back; a
crash loses nothing that was acknowledged; the log checks out against the
contract (docs/audit-protocol.md) with a checker written apart from the C
code. No mail server is needed."""
import glob
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

import mkstack
from milterenv import BUILDDIR, MAILKEEP

AUDITD = os.path.join(BUILDDIR, 'audit', 'mailkeep-auditd')
LOG_NAME = re.compile(r'^\d{4}-\d{2}-\d{2}\.log$')


class Client:
    """One connection: lines out, answers in."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b''

    def send(self, *lines):
        self.sock.sendall(b''.join((l if isinstance(l, bytes) else l.encode()) + b'\n'
                                   for l in lines))

    def answer(self):
        while b'\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return line.decode()

    def sync(self, token='t'):
        """(the S answer, [the E answers before it])"""
        self.send('S ' + token)
        errors = []
        while True:
            a = self.answer()
            if a is None or a.startswith('S %s ' % token):
                return a, errors
            errors.append(a)

    def close(self):
        self.sock.close()


def record(**fields):
    return 'A ' + json.dumps(fields, separators=(',', ':'), ensure_ascii=False)


class Daemon:
    def __init__(self, workdir, extra=''):
        self.dir = workdir
        self.log_dir = os.path.join(workdir, 'log')
        self.keys = os.path.join(workdir, 'keys')
        self.socket = os.path.join(workdir, 'audit.sock')
        self.config = os.path.join(workdir, 'mailkeep.conf')
        self.stderr_path = os.path.join(workdir, 'auditd.stderr')
        self.proc = None
        self.configure(extra)
        self.mailkeep('init')

    def configure(self, extra=''):
        with open(self.config, 'w') as f:
            f.write('[global]\nlog = stderr\nlog_level = debug\n'
                    '[audit]\nsocket = %s\nlog_dir = %s\ndb = %s/usage.sqlite\nkeys_dir = %s\n%s'
                    % (self.socket, self.log_dir, self.log_dir, self.keys, extra))

    def mailkeep(self, *args, check=True):
        r = subprocess.run([MAILKEEP, '-c', self.config, 'audit'] + list(args),
                           capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError('mailkeep audit %s: exit %d\n%s%s'
                                 % (' '.join(args), r.returncode, r.stdout, r.stderr))
        return r

    def start(self, *args):
        self.mark = len(self.log())
        err = open(self.stderr_path, 'ab')
        self.proc = subprocess.Popen([AUDITD, '-f', '-c', self.config] + list(args), stderr=err)
        err.close()
        deadline = time.time() + 10
        while 'listening on' not in self.log()[self.mark:]:
            if self.proc.poll() is not None:
                raise AssertionError('exit %d:\n%s' % (self.proc.returncode, self.log()))
            assert time.time() < deadline, self.log()
            time.sleep(0.02)
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        return rc

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            with open(self.stderr_path, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def wait_log(self, text, timeout=10):
        deadline = time.time() + timeout
        while text not in self.log()[self.mark:]:
            assert time.time() < deadline, 'no "%s" in:\n%s' % (text, self.log()[self.mark:])
            time.sleep(0.05)

    def client(self, timeout=30):
        return Client(self.socket, timeout)

    def files(self):
        return sorted(p for p in glob.glob(os.path.join(self.log_dir, '*'))
                      if LOG_NAME.match(os.path.basename(p)))

    def lines(self):
        out = []
        for path in self.files():
            with open(path, encoding='utf-8') as f:
                out.extend((path, line[:-1]) for line in f if line.endswith('\n'))
        return out

    def records(self):
        return [json.loads(text) for _, text in self.lines() if '"op":"checkpoint"' not in text]

    def check_chain(self, live=False):
        """The contract, checked without the C code: seq from 1 without
        gaps, time, field order, each hash and prev, each checkpoint's
        signature (python3-cryptography, listed in contrib/debian-packages), the head."""
        prev = bytes(32)
        out = []
        for n, (path, text) in enumerate(self.lines(), 1):
            rec = json.loads(text)
            assert rec['seq'] == n, (path, n, text[:100])
            assert re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$', rec['time'])
            assert os.path.basename(path) >= rec['time'][:10] + '.log' or rec['op'] == \
                'checkpoint', (path, text[:100])
            assert text.startswith('{"seq":%d,"time":"%s",' % (n, rec['time']))
            assert rec['prev'] == prev.hex(), (path, n)
            digest = hashlib.sha256(prev + text[:text.rindex(',"prev":"')].encode()).digest()
            assert rec['hash'] == digest.hex(), (path, n)
            if rec['op'] == 'checkpoint':
                assert list(rec) == ['seq', 'time', 'op', 'prev', 'hash', 'sig'], text
                self.check_sig(rec)
            else:
                assert list(rec)[-3:] == ['peer', 'prev', 'hash'], text
                assert set(rec['peer']) == {'pid', 'uid'}
            prev = digest
            out.append(rec)
        if out and not live:
            assert out[-1]['op'] == 'checkpoint', 'the daemon signs what it has at stop'
            with open(os.path.join(self.log_dir, 'head')) as f:
                assert f.read() == 'seq=%d hash=%s file=%s sig=%s\n' % (
                    out[-1]['seq'], out[-1]['hash'], os.path.basename(self.files()[-1]),
                    out[-1]['sig'])
        return out

    def check_sig(self, rec):
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        with open(os.path.join(self.keys, 'audit-signing.pub'), 'rb') as f:
            key = load_pem_public_key(f.read())
        key.verify(bytes.fromhex(rec['sig']), ('mailkeep audit checkpoint v1 seq=%d hash=%s'
                                               % (rec['seq'], rec['hash'])).encode())


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


@pytest.fixture
def auditd():
    workdir = mkstack.make_workdir('mk-auditd-')
    d = Daemon(workdir, 'checkpoint_interval = 1s\n')
    try:
        yield d
    finally:
        d.stop(signal.SIGKILL)
        if os.environ.get('MK_KEEP') != '1':
            shutil.rmtree(workdir, ignore_errors=True)


def test_many_clients_at_once_make_one_gap_free_chain(auditd):
    auditd.start()
    clients, per_client, errors, answers = 16, 400, [], {}

    def run(k):
        try:
            c = auditd.client()
            for i in range(per_client):
                c.send(record(op='read', user='user%d@example.com' % k, c=k, n=i,
                              mailbox='收件匣', mailbox_guid='%032x' % k, uid=i + 1,
                              message_id='<%d.%d@example.net>' % (k, i)))
                if k % 2 == 0 and i % 10 == 0:
                    c.send('U ' + json.dumps({'kind': 'mailbox', 'user': 'user%d@example.com'
                                              % k, 'mailbox_guid': '%032x' % k,
                                              'mailbox': 'INBOX', 'messages': i,
                                              'vsize': 100 * i}))
                if i % 50 == 49:
                    a, e = c.sync('s%d' % i)
                    assert a and a.startswith('S s%d ok ' % i) and not e, (a, e)
                    answers.setdefault(k, []).append(int(a.split()[3]))
            c.close()
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # each sync's SEQ covers that client's records up to it
    recs = auditd.records()
    assert len(recs) == clients * per_client
    seq_of = {(r['c'], r['n']): r['seq'] for r in recs}
    for k, seqs in answers.items():
        for j, s in enumerate(seqs):
            assert s >= seq_of[(k, 50 * j + 49)]
    # one chain, every client's records in the order it sent them
    chain = auditd.check_chain(live=True)
    for k in range(clients):
        assert [r['n'] for r in recs if r['c'] == k] == list(range(per_client))
    assert {(r['peer']['pid'], r['peer']['uid']) for r in recs} == {(os.getpid(), os.getuid())}
    # interleaved, not one client after the other
    firsts = [next(i for i, r in enumerate(recs) if r['c'] == k) for k in range(clients)]
    assert max(firsts) < len(recs) // 2
    r = auditd.mailkeep('verify')
    assert 'intact' in r.stdout, r.stdout
    assert auditd.stop() == 0
    chain = auditd.check_chain()
    assert chain[-1]['op'] == 'checkpoint'
    assert auditd.mailkeep('verify').returncode == 0
    out = auditd.mailkeep('reads', '-u', 'user3@example.com').stdout.splitlines()
    assert len(out) == per_client and out[0].startswith('user3@example.com')


def test_sync_is_answered_only_after_the_records_are_synced(auditd):
    if shutil.which('strace') is None:
        pytest.skip('no strace')
    auditd.start()
    trace = os.path.join(auditd.dir, 'strace.out')
    st = subprocess.Popen(['strace', '-f', '-qq', '-e', 'trace=write,writev,fdatasync,sendto',
                           '-s', '1000000', '-o', trace, '-p', str(auditd.pid)],
                          stderr=subprocess.DEVNULL)
    time.sleep(1)
    if st.poll() is not None:
        pytest.skip('strace cannot attach here')
    c = auditd.client()
    for k in range(5):
        c.send(*(record(op='select', user='bob', mark='m%d-%d' % (k, i)) for i in range(20)))
        a, e = c.sync('k%d' % k)
        assert a.startswith('S k%d ok ' % k), a
    c.close()
    time.sleep(0.5)
    st.terminate()
    st.wait()
    calls = open(trace).read().splitlines()
    log_fd = None
    for k in range(5):
        mark = 'm%d-19' % k
        wrote = next(i for i, l in enumerate(calls) if mark in l and ('write(' in l
                                                                     or 'writev(' in l))
        log_fd = re.search(r'writev?\((\d+),', calls[wrote]).group(1)
        answered = next(i for i, l in enumerate(calls) if 'S k%d ok' % k in l)
        synced = [i for i, l in enumerate(calls)
                  if re.search(r'fdatasync\(%s\)\s+= 0' % log_fd, l) and wrote < i < answered]
        assert synced, 'S k%d answered without an fdatasync after the write:\n%s' % (
            k, '\n'.join(calls[wrote:answered + 1]))


def test_refused_lines_are_answered_and_the_connection_goes_on(auditd):
    auditd.start()
    c = auditd.client()
    c.send(record(op='login', user='bob', service='imap'))
    c.send('A {"op":"read","user":"bob","seq":5}')
    c.send(b'A {"op":"read","user":"b\xffb","mailbox":"\xe6\x94\xb6"}')
    c.send('A {"op":"read","user":"bob","size":1.5}')
    c.send('A ' + 'x' * 70000)
    c.send(record(op='logout', user='bob'))
    a, errors = c.sync('x1')
    assert a.startswith('S x1 error 4 lines refused'), a
    assert [e.split(':')[0] for e in errors] == ['E A', 'E A', 'E A', 'E line longer than 65536 '
                                                                       'bytes']
    assert '"seq" is reserved' in errors[0] and 'UTF-8' in errors[1] and 'size' in errors[2]
    # a line of exactly 65536 bytes with its newline is taken
    pad = 65535 - len(record(op='note', user='bob', pad=''))
    c.send(record(op='note', user='bob', pad='p' * pad))
    assert c.sync('x2')[0].startswith('S x2 ok ')
    c.close()
    assert [r['op'] for r in auditd.records()] == ['login', 'logout', 'note']
    log = auditd.log()
    assert 'refused: A: "seq" is reserved: the daemon writes it: A {"op":"read"' in log
    assert '"user":"b\\xffb"' in log                # the line is shown, escaped
    assert '"mailbox":"\u6536"' in log              # valid UTF-8 as it is


def test_a_client_that_never_reads_is_dropped_and_others_go_on(auditd):
    auditd.start()
    deaf = auditd.client(timeout=5)
    with pytest.raises(OSError):
        for _ in range(200):            # 10 000 refused lines a go: answers pile up
            deaf.send(*(['A nonsense'] * 10000))
    other = auditd.client()
    other.send(record(op='login', user='carol'))
    assert other.sync()[0].startswith('S t ok ')
    auditd.wait_log('answers unread: dropped')
    assert auditd.log().count('refused: ') <= 11      # ten lines, and one note


def test_a_full_disk_keeps_every_record_and_holds_clients_back(auditd):
    auditd.configure('checkpoint_interval = 1s\nmax_pending = 1M\n')
    auditd.start()
    c = auditd.client()
    c.send(record(op='login', user='dave'))
    assert c.sync()[0].startswith('S t ok ')
    size = os.path.getsize(auditd.files()[-1])
    # a file size limit stands in for a full disk: the writes fail (EFBIG)
    soft, hard = resource.prlimit(auditd.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(auditd.pid, resource.RLIMIT_FSIZE, (size + 3000, hard))
    total, sent, done = 12000, [0], threading.Event()
    result = {}

    def flood():
        w = auditd.client(timeout=120)
        for i in range(total // 100):
            w.send(*(record(op='read', user='dave', n=100 * i + j, pad='p' * 300)
                     for j in range(100)))
            sent[0] += 100
        result['answer'] = w.sync('flood')
        done.set()
    t = threading.Thread(target=flood)
    t.start()
    time.sleep(3)
    assert not done.is_set()
    held = sent[0]
    time.sleep(1)
    assert sent[0] == held < total, 'the daemon must stop reading: %d of %d sent' % (held, total)
    auditd.wait_log('cannot write')
    auditd.wait_log('reading from clients paused')
    assert auditd.log().count('cannot write') == 1               # logged once
    # another client's sync waits too
    other = auditd.client(timeout=1)
    other.send(record(op='select', user='erin'))
    other.send('S o1')
    with pytest.raises(socket.timeout):
        other.answer()
    # a client that asks for a sync and hangs up: its record is kept, and
    # the daemon does not spin on the closed connection meanwhile
    gone = auditd.client()
    gone.send(record(op='logout', user='gone'), 'S g')
    gone.close()
    cpu = cpu_seconds(auditd.pid)
    time.sleep(2)
    assert cpu_seconds(auditd.pid) - cpu < 0.3
    # the disk has room again: everything goes through, in order, nothing lost
    resource.prlimit(auditd.pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert done.wait(60), 'the flood was not answered'
    t.join()
    assert result['answer'][0].startswith('S flood ok '), result
    other.sock.settimeout(30)
    assert other.answer().startswith('S o1 ok ')
    auditd.wait_log('written again')
    recs = auditd.records()
    assert [r['n'] for r in recs if 'n' in r] == list(range(total))
    assert len(recs) == total + 3
    assert [r['user'] for r in recs if r['op'] == 'logout'] == ['gone']
    auditd.check_chain(live=True)
    assert auditd.stop() == 0
    auditd.check_chain()
    assert auditd.mailkeep('verify').returncode == 0


def test_a_crash_loses_nothing_acknowledged_and_the_chain_goes_on(auditd):
    auditd.start()
    c = auditd.client()
    for i in range(50):
        c.send(record(op='read', user='frank', n=i))
    assert c.sync()[0].startswith('S t ok ')
    auditd.stop(signal.SIGKILL)         # no last checkpoint
    path = auditd.files()[-1]
    with open(path, 'a') as f:          # and a write cut short
        f.write('{"seq":51,"time":"2026-11-23T10:00:00.0')
    r = auditd.mailkeep('verify', check=False)
    assert r.returncode == 1 and 'unsigned-tail' in r.stdout, r.stdout
    auditd.start()
    auditd.wait_log('cut off a torn last line')
    assert os.path.exists(path + '.discarded')
    c = auditd.client()
    c.send(record(op='read', user='frank', n=50))
    assert c.sync()[0].startswith('S t ok ')
    assert auditd.stop() == 0
    assert [r['n'] for r in auditd.records()] == list(range(51))
    auditd.check_chain()
    r = auditd.mailkeep('verify')
    assert 'intact' in r.stdout


def test_an_edited_record_is_found_and_the_daemon_will_not_append_to_it(auditd):
    auditd.start()
    c = auditd.client()
    for i in range(20):
        c.send(record(op='read', user='grace', n=i, mailbox='INBOX'))
    assert c.sync()[0].startswith('S t ok ')
    assert auditd.stop() == 0
    path = auditd.files()[-1]
    lines = open(path).read().split('\n')
    target = next(i for i, l in enumerate(lines) if '"n":7,' in l)
    seq = json.loads(lines[target])['seq']
    lines[target] = lines[target].replace('"INBOX"', '"Trash"')
    open(path, 'w').write('\n'.join(lines))
    r = auditd.mailkeep('verify', check=False)
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == '%s:%d: seq %d: modified: record %d does not match its ' \
        'hash: its fields were changed' % (path, target + 1, seq, seq), r.stdout
    # the last checkpoint still holds; the edit is before it: the daemon
    # starts (it checks from the last checkpoint on) and the chain goes on
    auditd.start()
    assert auditd.stop() == 0
    # an edit after the last checkpoint: it refuses, naming the line
    lines = open(path).read().split('\n')
    lines.insert(len(lines) - 1, lines[target])     # after the last checkpoint
    open(path, 'w').write('\n'.join(lines))
    err = open(auditd.stderr_path, 'ab')
    rc = subprocess.run([AUDITD, '-f', '-c', auditd.config], stderr=err, timeout=30).returncode
    err.close()
    assert rc == 73
    assert 'check the log with mailkeep audit verify' in auditd.log()


def test_flags_check_reload_and_a_second_daemon(auditd):
    r = subprocess.run([AUDITD, '-c', auditd.config, '-t'], capture_output=True, text=True)
    assert r.returncode == 0 and 'is valid' in r.stdout
    r = subprocess.run([AUDITD, '-V'], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith('mailkeep-auditd ')
    r = subprocess.run([AUDITD, '-x'], capture_output=True, text=True)
    assert r.returncode == 64
    os.rename(auditd.keys, auditd.keys + '.away')
    r = subprocess.run([AUDITD, '-c', auditd.config, '-t'], capture_output=True, text=True)
    assert r.returncode == 78 and 'mailkeep audit init' in r.stderr
    os.rename(auditd.keys + '.away', auditd.keys)
    auditd.configure('socket_mode = 0640\nsocket_group = mail\n')
    auditd.start()
    st = os.stat(auditd.socket)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == __import__('grp').getgrnam(
        'mail').gr_gid
    # the same socket, and the same log under another socket
    r = subprocess.run([AUDITD, '-f', '-c', auditd.config], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 69 and 'another mailkeep-auditd' in r.stderr
    other = os.path.join(auditd.dir, 'other.sock')
    r = subprocess.run([AUDITD, '-f', '-c', auditd.config, '-p', other], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 73 and 'in use by another writer' in r.stderr
    # a reload: a broken file changes nothing, a good one applies
    with open(auditd.config, 'a') as f:
        f.write('bogus = 1\n')
    auditd.proc.send_signal(signal.SIGUSR1)
    auditd.wait_log('reload failed, the running configuration stays')
    auditd.configure('socket_mode = 0640\nsocket_group = root\ncheckpoint_interval = 5s\n')
    auditd.proc.send_signal(signal.SIGUSR1)
    auditd.wait_log('configuration reloaded')
    assert '[audit] socket_group changed: it takes effect when the daemon is restarted' \
        in auditd.log()
    c = auditd.client()
    c.send(record(op='login', user='hsu'))
    assert c.sync()[0].startswith('S t ok ')
    assert auditd.stop() == 0
    assert not os.path.exists(auditd.socket)


def test_search_shows_what_was_recorded(auditd):
    auditd.start()
    c = auditd.client()
    c.send(record(op='login', user='alice', service='imap', ip='192.0.2.1'))
    c.send(record(op='select', user='alice', mailbox='Projects', readonly=True))
    c.send(record(op='expunge', user='bob', mailbox='INBOX', uid=4, service='doveadm',
                  admin='root'))
    c.send(record(op='copy', user='alice', from_mailbox='Projects', from_uid=1, mailbox='Keep',
                  uid=9, note='two words'))
    assert c.sync()[0].startswith('S t ok ')

    def search(*args):
        return auditd.mailkeep('search', *args).stdout.splitlines()
    assert len(search('-j')) == 4
    assert [json.loads(l)['op'] for l in search('-u', 'alice', '-j')] == ['login', 'select',
                                                                           'copy']
    assert [json.loads(l)['op'] for l in search('-o', 'select,expunge', '-j')] == ['select',
                                                                                   'expunge']
    assert [json.loads(l)['op'] for l in search('-m', 'Projects', '-j')] == ['select', 'copy']
    assert [json.loads(l)['user'] for l in search('-a', '-j')] == ['bob']
    assert search('-s', '1h', '-j') and not search('-s', '2000-01-01', '-e', '2000-01-02', '-j')
    out = search('-u', 'alice')
    assert out[-1] == '3 records'
    assert re.match(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  login  alice service=imap '
                    r'ip=192\.0\.2\.1  seq=1$', out[0]), out[0]
    assert 'note="two words"' in out[2]
    r = auditd.mailkeep('search', '-s', 'yesterday', check=False)
    assert r.returncode == 64 and 'not YYYY-MM-DD' in r.stderr


def test_records_no_one_waits_for_are_written_within_the_commit_window(auditd):
    """Without any S, records still reach the disk (after [audit]
    commit_delay), and a record is kept byte for byte as a plugin sends it
    (the fast path) or written compactly (the full path)."""
    auditd.configure('checkpoint_interval = 1s\ncommit_delay = 200\n')
    auditd.start()
    c = auditd.client()
    fast = ('A {"op":"flags","user":"wei@example.org","mailbox":"收件匣 \\"Q4\\"",'
            '"uid":7,"flags":["\\\\Seen"],"keywords":[],"peek":false}')
    full = 'A { "op" : "select", "user":"wei@example.org", "mailbox":"caf\\u00e9" }'
    read = record(op='read', user='wei@example.org', mailbox_guid='ab12', uid=7,
                  message_id='<m@x>')
    c.send(fast, full, read)
    deadline = time.time() + 30
    while len(auditd.records()) < 3:
        assert time.time() < deadline, auditd.log()
        time.sleep(0.05)
    lines = [text for _, text in auditd.lines() if '"op":"checkpoint"' not in text]
    assert fast[3:-1] in lines[0]
    assert '"op":"select","user":"wei@example.org","mailbox":"café"' in lines[1]
    assert auditd.records()[2]['op'] == 'read'
    # the read reached the usage database too, without a sync
    deadline = time.time() + 30
    while True:
        out = auditd.mailkeep('reads', '-u', 'wei@example.org').stdout
        if '<m@x>' in out:
            break
        assert time.time() < deadline, out
        time.sleep(0.05)
    c.close()
    assert auditd.stop() == 0
    auditd.check_chain()
