#!/usr/bin/python3
"""Archive ingest: messages per second and storage, against a baseline in
the same run.

    bench_archive.py [MESSAGES]

Writes MESSAGES journal spool files of about 20 KB each (a text body in
English and Chinese, half of them with a docx attachment, every one
different), then times `mailkeep archive ingest` over them (text
extraction, SHA-256, zstd, AES-GCM, the signed log, the index; fsync per
batch). The baseline is the least any archive must do with the same
bytes: copy each spool file into a directory, fsync per batch of the same
size. Prints messages/s for both, the ingest's peak memory, and the
archive's size (objects and index) as a fraction of the raw bytes."""
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'harness'))
from mkdocs import docx  # noqa: E402

BUILDDIR = os.environ.get('MK_BUILDDIR', os.path.join(HERE, '..', 'build'))
MAILKEEP = os.path.join(BUILDDIR, 'tools', 'mailkeep')
BATCH = 256

WORDS = ('report budget meeting contract invoice schedule project customer review draft '
         'approval quarterly shipment delivery payment account team update agenda minutes '
         'proposal vendor order policy training').split()
HANZI = ('本公司員工個資外洩事件調查報告請勿外流會議紀錄客戶合約付款發票專案進度審核預算'
         '季度出貨交期帳戶訓練政策供應商提案議程時間地點主管同意附件說明內容確認回覆')


def text(rnd, size):
    out = []
    n = 0
    while n < size:
        if rnd.random() < 0.4:
            s = ''.join(rnd.choice(HANZI) for _ in range(rnd.randint(4, 20))) + '，'
        else:
            s = ' '.join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 12))) + '. '
        out.append(s)
        n += len(s.encode())
    return ''.join(out)


def message(rnd, i):
    import base64
    body = text(rnd, 14000 if i % 2 else 23000) + '\nref %d-%d\n' % (i, rnd.randint(0, 10**9))
    head = ('From: user%d@example.com\r\nTo: staff%d@example.com\r\nSubject: %s %d\r\n'
            'Date: Mon, 23 Nov 2026 09:00:00 +0800\r\nMessage-ID: <%d.bench@example.com>\r\n'
            'MIME-Version: 1.0\r\n' % (i % 500, i % 80, rnd.choice(WORDS), i, i))
    if i % 2:
        att = base64.encodebytes(docx(text(rnd, 6000))).decode().replace('\n', '\r\n')
        return (head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
                'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
                + body.replace('\n', '\r\n') + '\r\n--b\r\nContent-Type: application/'
                'vnd.openxmlformats-officedocument.wordprocessingml.document; name="a.docx"\r\n'
                'Content-Disposition: attachment; filename="a.docx"\r\n'
                'Content-Transfer-Encoding: base64\r\n\r\n' + att + '--b--\r\n').encode()
    return (head + 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit'
            '\r\n\r\n' + body.replace('\n', '\r\n')).encode()


def spool_file(path, msg, i, t):
    env = ('version 1\ntime %d\nqueue-id Q%d\nsender user%d@example.com\nclient 203.0.113.5\n'
           'source journal\nrcpt staff%d@example.com inbound\n' % (t, i, i % 500, i % 80)).encode()
    with open(path, 'wb') as f:
        f.write(msg + env + b'\nMKJ1 %020d %020d\n' % (len(msg), len(env)))


def du(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    work = tempfile.mkdtemp(prefix='bench-archive-', dir='/var/tmp')
    try:
        rnd = random.Random(2026)
        spool = os.path.join(work, 'spool')
        os.makedirs(os.path.join(spool, 'new'))
        os.makedirs(os.path.join(spool, 'tmp'))
        raw = 0
        t0 = int(time.time()) - n
        for i in range(n):
            msg = message(rnd, i)
            raw += len(msg)
            spool_file(os.path.join(spool, 'new', '%010d.000000.bench.1.%d' % (t0 + i, i)),
                       msg, i, t0 + i)
        print('corpus: %d messages, %.1f KB on average, half with a docx attachment'
              % (n, raw / n / 1024))
        saved = os.path.join(work, 'spool-copy')
        shutil.copytree(spool, saved)

        # baseline: copy each file, fsync per batch
        dest = os.path.join(work, 'copy')
        os.makedirs(dest)
        names = sorted(os.listdir(os.path.join(spool, 'new')))
        start = time.monotonic()
        for b in range(0, n, BATCH):
            fds = []
            for name in names[b:b + BATCH]:
                with open(os.path.join(spool, 'new', name), 'rb') as f:
                    data = f.read()
                fd = os.open(os.path.join(dest, name), os.O_WRONLY | os.O_CREAT, 0o600)
                os.write(fd, data)
                fds.append(fd)
            for fd in fds:
                os.fsync(fd)
                os.close(fd)
            dfd = os.open(dest, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
        base = time.monotonic() - start
        print('baseline, plain copy with fsync per %d: %7.0f messages/s' % (BATCH, n / base))

        conf = os.path.join(work, 'mailkeep.conf')
        with open(conf, 'w') as f:
            f.write('[global]\nlog = stderr\n[archive]\ndir = %s/archive\nkeys_dir = %s/keys\n'
                    'batch = %d\n[journal]\nspool_dir = %s\n' % (work, work, BATCH, spool))
        subprocess.run([MAILKEEP, '-c', conf, 'archive', 'init'], check=True,
                       stdout=subprocess.DEVNULL)
        start = time.monotonic()
        subprocess.run([MAILKEEP, '-c', conf, 'archive', 'ingest', '-q'], check=True,
                       stderr=subprocess.DEVNULL)
        took = time.monotonic() - start
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        left = len(os.listdir(os.path.join(spool, 'new')))
        assert left == 0, '%d spool files left' % left
        print('mailkeep archive ingest:                 %7.0f messages/s (%.0f%% of the '
              'baseline), %.1f MB/s, peak RSS %.0f MB' % (n / took, 100 * base / took,
                                                          raw / took / 1e6, rss))
        objects = du(os.path.join(work, 'archive', 'objects'))
        index = sum(os.path.getsize(os.path.join(work, 'archive', f))
                    for f in os.listdir(os.path.join(work, 'archive')) if f.startswith('index'))
        log = os.path.getsize(os.path.join(work, 'archive', 'log'))
        print('storage: raw %.1f MB; objects %.1f MB (%.0f%% of raw), index %.1f MB (%.0f%%), '
              'log %.1f MB; in all %.0f%% of raw'
              % (raw / 1e6, objects / 1e6, 100 * objects / raw, index / 1e6, 100 * index / raw,
                 log / 1e6, 100 * (objects + index + log) / raw))
        r = subprocess.run([MAILKEEP, '-c', conf, 'archive', 'verify'], capture_output=True,
                           text=True)
        print('verify after the run: %s' % r.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
