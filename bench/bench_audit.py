#!/usr/bin/python3
"""mailkeep-auditd: records per second from many clients, and what a
record costs, against a baseline in the same run.

    bench_audit.py [CLIENTS] [RECORDS]

Starts the daemon in a temporary directory (on the file system of $TMPDIR)
and runs CLIENTS client processes (default 8) at once, each its own
connection, in two ways:

    streamed  RECORDS records each (default 50000), an S line every 1000,
              the last S waited for: how fast the daemon takes records;
    synced    one record, then S, waiting for the answer, over and over for
              5 seconds: what a client that waits for every record gets
              (the daemon syncs once for all the clients waiting).

A record is a typical IMAP "read" (about 250 bytes as sent). The baseline
writes the same lines, hashed, from one process: appended, then
fdatasync'd once per 1000 lines (streamed) or once per line (synced) -
what the disk allows. Prints records/s for each, and the daemon's CPU time
per record and peak memory."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing import Process, Queue

HERE = os.path.dirname(os.path.abspath(__file__))
BUILDDIR = os.environ.get('MK_BUILDDIR', os.path.join(HERE, '..', 'build'))
AUDITD = os.path.join(BUILDDIR, 'audit', 'mailkeep-auditd')
MAILKEEP = os.path.join(BUILDDIR, 'tools', 'mailkeep')
SYNCED_SECONDS = 5


def record(k, i):
    return ('A ' + json.dumps({
        'op': 'read', 'user': 'user%d@example.com' % k, 'session': 'SgJXoT8e%06d' % k,
        'service': 'imap', 'ip': '192.0.2.%d' % (k + 1), 'mailbox': 'INBOX',
        'mailbox_guid': '%032x' % (k + 7), 'uid': i + 1,
        'message_id': '<%d.%d.bench@example.net>' % (k, i), 'part': 'full', 'peek': False,
    }, separators=(',', ':')) + '\n').encode()


def answer(sock, buf):
    while b'\n' not in buf[0]:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError('closed')
        buf[0] += data
    line, buf[0] = buf[0].split(b'\n', 1)
    return line


def streamed(path, k, n, q):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    buf, chunk = [b''], []
    for i in range(n):
        chunk.append(record(k, i))
        if i % 1000 == 999 or i == n - 1:
            chunk.append(b'S s%d\n' % i)
            s.sendall(b''.join(chunk))
            chunk = []
    while not answer(s, buf).startswith(b'S s%d ' % (n - 1)):
        pass
    s.close()
    q.put(n)


def synced(path, k, seconds, q):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    buf, done, latencies = [b''], 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t = time.monotonic()
        s.sendall(record(k, done) + b'S x\n')
        assert answer(s, buf).startswith(b'S x ok ')
        latencies.append(time.monotonic() - t)
        done += 1
    s.close()
    q.put((done, latencies))


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def peak_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return 0


def run(target, path, clients, arg):
    q = Queue()
    procs = [Process(target=target, args=(path, k, arg, q)) for k in range(clients)]
    t = time.monotonic()
    for p in procs:
        p.start()
    results = [q.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return results, time.monotonic() - t


def baseline(dir, clients, per_client, every):
    """Append the lines with their SHA-256 (what chaining costs at least),
    fdatasync every `every` lines; lines per second."""
    import hashlib
    lines = [record(k, i) for i in range(per_client) for k in range(clients)]
    path = os.path.join(dir, 'baseline.log')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    prev = bytes(32)
    t = time.monotonic()
    batch = []
    for n, line in enumerate(lines, 1):
        prev = hashlib.sha256(prev + line).digest()
        batch.append(line)
        if n % every == 0 or n == len(lines):
            os.write(fd, b''.join(batch))
            os.fdatasync(fd)
            batch = []
    elapsed = time.monotonic() - t
    os.close(fd)
    os.unlink(path)
    return len(lines) / elapsed


def main():
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    per_client = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    work = tempfile.mkdtemp(prefix='mk-bench-audit-')
    config = os.path.join(work, 'mailkeep.conf')
    path = os.path.join(work, 'audit.sock')
    with open(config, 'w') as f:
        f.write('[global]\nlog = stderr\n[audit]\nsocket = %s\nlog_dir = %s/log\n'
                'db = %s/log/usage.sqlite\nkeys_dir = %s/keys\n' % (path, work, work, work))
    subprocess.run([MAILKEEP, '-c', config, 'audit', 'init'], check=True, capture_output=True)
    err = open(os.path.join(work, 'auditd.log'), 'wb')
    daemon = subprocess.Popen([AUDITD, '-f', '-c', config], stderr=err)
    try:
        for _ in range(200):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        cpu0 = cpu_seconds(daemon.pid)
        results, elapsed = run(streamed, path, clients, per_client)
        cpu1 = cpu_seconds(daemon.pid)
        total = sum(results)
        stream_rate = total / elapsed
        stream_cpu = (cpu1 - cpu0) / total * 1e6
        results, elapsed = run(synced, path, clients, SYNCED_SECONDS)
        cpu2 = cpu_seconds(daemon.pid)
        synced_total = sum(n for n, _ in results)
        latencies = sorted(x for _, lat in results for x in lat)
        sync_rate = synced_total / SYNCED_SECONDS
        sync_cpu = (cpu2 - cpu1) / synced_total * 1e6
        peak = peak_kib(daemon.pid)
        base_stream = baseline(work, clients, min(per_client, 20000), 1000)
        base_sync = baseline(work, 1, 2000, 1)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        verify = subprocess.run([MAILKEEP, '-c', config, 'audit', 'verify'],
                                capture_output=True, text=True)
        print('%d clients; log on %s' % (clients, work))
        print('%-46s %12s %14s' % ('', 'records/s', 'daemon CPU/rec'))
        print('%-46s %12.0f %12.1f us' % ('streamed (S every 1000)', stream_rate, stream_cpu))
        print('%-46s %12.0f %12s' % ('  baseline: hash, append, fdatasync per 1000',
                                     base_stream, ''))
        print('%-46s %12.0f %12.1f us' % ('synced (each record waits for its S)', sync_rate,
                                          sync_cpu))
        print('%-46s %12.0f %12s' % ('  baseline: one writer, fdatasync per record',
                                     base_sync, ''))
        print('synced latency: median %.2f ms, 99th percentile %.2f ms'
              % (latencies[len(latencies) // 2] * 1e3, latencies[len(latencies) * 99 // 100]
                 * 1e3))
        print('daemon peak RSS %.1f MiB; records written %d; verify: %s'
              % (peak / 1024.0, total + synced_total, verify.stdout.strip().splitlines()[-1]))
    finally:
        if daemon.poll() is None:
            daemon.kill()
        err.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
