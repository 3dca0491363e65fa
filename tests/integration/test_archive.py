"""The compliance archive end to end: mail through the real Postfix is
captured by mailkeep-journal, ingested, found by a Chinese word and by a
word inside an attachment, shown byte for byte, caught when tampered with,
exported and imported again, and survives kill -9 during ingest."""
import base64
import os
import random
import signal
import subprocess
import time
from email.message import EmailMessage

import pytest

import mkstack
from archiveenv import Archive, JournalMilter
from milterenv import MAILKEEP
from mkdocs import docx

BIG5_TEXT = '本公司員工個資外洩事件調查報告，請勿外流。'


@pytest.fixture(scope='module')
def env():
    st = mkstack.Stack()
    jr = None
    try:
        st.slapd.start()
        jr = JournalMilter(st.workdir, st.slapd).start()
        st.start(smtpd_milters=jr.socket, non_smtpd_milters=jr.socket)
        ar = Archive(os.path.join(st.workdir, 'ar'), jr.spool,
                     doveadm='/usr/bin/doveadm -c %s' % st.dovecot.conf_path)
        ar.run('init')
        yield st, jr, ar
    finally:
        if jr:
            jr.stop()
        st.stop()


def big5_with_docx(subject):
    msg = EmailMessage()
    msg['From'] = 'Alice Chen <alice@example.com>'
    msg['To'] = 'Bob <bob@example.com>'
    msg['Subject'] = subject
    msg['Date'] = 'Mon, 23 Nov 2026 09:30:00 +0800'
    msg['Message-ID'] = '<%s@example.com>' % subject
    msg.set_content(BIG5_TEXT + '\n', charset='big5', cte='base64')
    msg.add_attachment(docx('The Zephyrine clause applies to every contractor.'),
                       maintype='application',
                       subtype='vnd.openxmlformats-officedocument.wordprocessingml.document',
                       filename='contract.docx')
    return msg.as_bytes().replace(b'\n', b'\r\n')


def send(st, subject, data=None, rcpts=('bob@example.com',)):
    data = data or ('From: alice@example.com\r\nTo: bob@example.com\r\nSubject: %s\r\n'
                    'Message-ID: <%s@example.com>\r\n\r\nbody of %s\r\n'
                    % (subject, subject, subject)).encode()
    res = st.send('alice@example.com', list(rcpts), data=data,
                  auth=('alice@example.com', 'mailkeep'))
    assert res.ok, res.describe()
    return data


def test_captured_mail_is_found_by_chinese_word_and_attachment_text(env):
    st, _jr, ar = env
    sent = send(st, 'ar-big5', big5_with_docx('ar-big5'), rcpts=('bob@example.com',
                                                                 'carol@example.com'))
    assert BIG5_TEXT.encode('big5') in base64.b64decode(
        sent.split(b'base64\r\n\r\n')[1].split(b'\r\n\r\n')[0])
    ar.run('ingest')
    assert ar.spool_files() == []
    hits = ar.search('個資')                         # a two-character word inside a longer run
    assert len(hits) == 1, hits
    msg_id = hits[0][0]
    assert ar.search('attachment:zephyrine')[0][0] == msg_id
    assert ar.search('bcc:carol@example.com')[0][0] == msg_id   # carol is in no header
    assert ar.search('from:alice direction:internal has:attachment')[0][0] == msg_id
    assert ar.search('個資法') == []                  # a phrase that is not there
    assert ' ok' in hits[0][1]                       # the hit says its object verifies
    shown = ar.run('show', str(msg_id), binary=True).stdout
    assert shown == sent                              # byte for byte what the client sent
    envelope = ar.run('show', '-e', str(msg_id)).stdout
    assert 'Recipients: bob@example.com\ncarol@example.com' in envelope
    assert 'Direction: internal' in envelope and 'Login: alice@example.com' in envelope


def test_a_flipped_byte_is_reported_by_show_search_and_verify(env):
    st, _jr, ar = env
    send(st, 'ar-tamper')
    ar.run('ingest')
    (msg_id, _), = ar.search('subject:ar-tamper')
    sha, pack, offset, length = ar.object_location(msg_id)
    with open(pack, 'r+b') as f:
        f.seek(offset + length // 2)
        byte = f.read(1)
        f.seek(offset + length // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    try:
        r = ar.run('show', str(msg_id), check=False)
        assert r.returncode != 0 and 'FAILS VERIFICATION' in r.stderr and r.stdout == ''
        assert 'MODIFIED' in ar.search('subject:ar-tamper')[0][1]
        r = ar.run('verify', check=False)
        assert r.returncode == 1 and 'PROBLEMS FOUND' in r.stdout
        assert 'modified: object %s' % sha in r.stdout
        r = ar.run('verify', str(msg_id), check=False)
        assert r.returncode == 1 and 'modified' in r.stdout
    finally:
        with open(pack, 'r+b') as f:
            f.seek(offset + length // 2)
            f.write(byte)
    assert 'intact' in ar.run('verify').stdout


def test_log_tampering_is_reported(env):
    st, _jr, ar = env
    send(st, 'ar-log')
    ar.run('ingest')
    log = os.path.join(ar.dir, 'archive', 'log')
    with open(log) as f:
        lines = f.readlines()
    try:
        swapped = lines[:]
        swapped[0], swapped[1] = swapped[1], swapped[0]
        with open(log, 'w') as f:
            f.writelines(swapped)
        r = ar.run('verify', check=False)
        assert r.returncode == 1 and 'reordered' in r.stdout, r.stdout
        with open(log, 'w') as f:
            f.writelines(lines[:1] + lines[2:])        # an entry removed
        r = ar.run('verify', check=False)
        assert r.returncode == 1 and 'missing' in r.stdout, r.stdout
    finally:
        with open(log, 'w') as f:
            f.writelines(lines)
    assert 'intact' in ar.run('verify').stdout


def test_mbox_export_reimports_with_the_same_count_and_bytes(env):
    st, _jr, ar = env
    for i in range(3):
        send(st, 'ar-export-%d' % i)
    send(st, 'ar-export-from', b'From: alice@example.com\r\nSubject: ar-export-from\r\n'
         b'\r\nFrom the start of a line\r\n>From quoted\r\n')
    ar.run('ingest')
    archived = sorted(ar.run('show', str(i), binary=True).stdout
                      for i, _ in ar.search('subject:ar-export*'))
    assert len(archived) == 4
    out = os.path.join(ar.dir, 'export.mbox')
    r = ar.run('export', '-f', 'mbox', '-o', out, 'subject:ar-export*')
    assert '4 message(s) exported' in r.stdout
    other = Archive(os.path.join(ar.dir, 'reimport'), os.path.join(ar.dir, 'reimport', 'spool'))
    other.run('init')
    r = other.run('import', out)
    assert '4 message(s) read' in r.stdout
    hits = other.search('subject:ar-export*')
    assert len(hits) == 4
    shown = sorted(other.run('show', str(i), binary=True).stdout for i, _ in hits)
    assert shown == archived
    # imported mail keeps where it came from, and is marked as imported
    assert 'Source: import' in other.run('show', '-e', str(hits[0][0])).stdout


def test_iso_and_eml_exports_carry_a_manifest(env):
    st, _jr, ar = env
    send(st, 'ar-iso')
    ar.run('ingest')
    for fmt in ('iso', 'eml'):
        out = os.path.join(ar.dir, 'export.' + fmt)
        ar.run('export', '-f', fmt, '-o', out, 'subject:ar-iso')
        names = subprocess.run(['bsdtar', '-tf', out], capture_output=True, text=True,
                               check=True).stdout.split()
        assert any(n.endswith('MANIFEST.sha256') for n in names), names
        emls = [n for n in names if n.endswith('.eml')]
        assert len(emls) == 1, names
        manifest = subprocess.run(['bsdtar', '-xOf', out, [n for n in names
                                   if n.endswith('MANIFEST.sha256')][0]],
                                  capture_output=True, text=True, check=True).stdout
        data = subprocess.run(['bsdtar', '-xOf', out, emls[0]], capture_output=True,
                              check=True).stdout
        import hashlib
        assert hashlib.sha256(data).hexdigest() in manifest
        assert b'Subject: ar-iso' in data
        r = ar.run('export', '-f', fmt, '-o', out, 'subject:ar-iso', check=False)
        assert r.returncode != 0                        # never overwritten


def test_export_into_a_mailbox_for_retrieval_over_imap(env):
    st, _jr, ar = env
    send(st, 'ar-mailbox')
    ar.run('ingest')
    (msg_id, _), = ar.search('subject:ar-mailbox')
    archived = ar.run('show', str(msg_id), binary=True).stdout
    r = ar.run('export', '-u', 'carol@example.com', '-m', 'Archive export', 'subject:ar-mailbox')
    assert '1 message(s) saved' in r.stdout
    msgs = st.imap_messages('carol@example.com', folder='Archive export')
    assert [raw for _uid, raw in msgs] == [archived], msgs


def test_reindex_rebuilds_the_same_index_from_log_and_store(env):
    st, _jr, ar = env
    send(st, 'ar-reindex', big5_with_docx('ar-reindex'))
    ar.run('ingest')
    before = [i for i, _ in ar.search('date:2000..2100', count=100000)]
    assert before
    index = os.path.join(ar.dir, 'archive', 'index.sqlite')
    os.unlink(index)                                  # lost entirely
    for suffix in ('-wal', '-shm'):
        if os.path.exists(index + suffix):
            os.unlink(index + suffix)
    r = ar.run('search', 'x', check=False)
    assert r.returncode != 0 and 'no index' in r.stderr
    ar.run('reindex')
    after = [i for i, _ in ar.search('date:2000..2100', count=100000)]
    assert after == before
    assert len(ar.search('subject:ar-reindex 個資 attachment:zephyrine')) == 1
    assert 'intact' in ar.run('verify').stdout


def test_maildir_import_takes_the_envelope_from_headers(env):
    _st, _jr, ar = env
    maildir = os.path.join(ar.dir, 'Maildir')
    for sub in ('cur', 'new', 'tmp', '.Sent/cur', '.Sent/new', '.Sent/tmp'):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    inbox = os.path.join(maildir, 'cur', '1700000000.1.host:2,S')
    with open(inbox, 'wb') as f:
        f.write(b'From: Wei <wei@example.org>\r\nTo: mei@example.org\r\nCc: jun@example.org\r\n'
                b'Subject: ar-maildir-inbox\r\nDate: Tue, 14 Nov 2023 08:00:00 +0800\r\n\r\nold\r\n')
    os.utime(inbox, (1700000000, 1700000000))       # delivered in November 2023
    with open(os.path.join(maildir, '.Sent', 'cur', '1700000001.2.host:2,S'), 'wb') as f:
        f.write(b'From: mei@example.org\r\nTo: wei@example.org\r\nSubject: ar-maildir-sent\r\n\r\nx\r\n')
    r = ar.run('import', maildir)
    assert '2 message(s) read' in r.stdout and 'archived' in r.stdout
    (msg_id, line), = ar.search('subject:ar-maildir-inbox')
    assert ' 2023-11-1' in line                       # its own time, not today's
    env_text = ar.run('show', '-e', str(msg_id)).stdout
    assert 'Sender: wei@example.org' in env_text
    assert 'Recipients: mei@example.org\njun@example.org' in env_text
    assert 'Source: import' in env_text and 'Direction: unknown' in env_text
    assert len(ar.search('subject:ar-maildir-sent')) == 1


def test_ingest_service_archives_mail_as_it_arrives(env):
    st, _jr, ar = env
    service = subprocess.Popen([MAILKEEP, '-c', ar.config, 'archive', 'ingest', '-w'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for i in range(3):
            send(st, 'ar-service-%d' % i)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(ar.search('subject:ar-service-%d' % i)) != 1:
                time.sleep(0.2)
            assert len(ar.search('subject:ar-service-%d' % i)) == 1
        assert ar.spool_files() == []
    finally:
        service.send_signal(signal.SIGTERM)
        rc = service.wait(timeout=30)
        err = service.stderr.read()
    assert rc == 0, err
    assert 'ingest watching' in err and 'ingest stopped' in err


def test_unfinished_receipts_are_swept_from_the_spool(env):
    _st, _jr, ar = env
    tmp = os.path.join(ar.spool, 'tmp')
    old = os.path.join(tmp, '1700000000.000000.host.1.0')       # a killed journal's leftover
    new = os.path.join(tmp, '%010d.000000.host.1.1' % time.time())  # a message arriving now
    for path in (old, new):
        with open(path, 'wb') as f:
            f.write(b'Subject: partial\r\n')
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    r = ar.run('ingest')
    assert not os.path.exists(old) and os.path.exists(new)
    assert '1 unfinished receipt(s) swept' in r.stderr
    os.unlink(new)


def test_kill_9_during_ingest_loses_and_duplicates_nothing(env):
    st, _jr, ar = env
    fast = Archive(ar.dir, ar.spool, batch=7)          # many commits: many places to die
    fast.config = os.path.join(ar.dir, 'batch7.conf')
    with open(ar.config) as f:
        text = f.read().replace('batch = 256', 'batch = 7')
    with open(fast.config, 'w') as f:
        f.write(text)
    n = 120
    for i in range(n):
        send(st, 'ar-kill-%03d' % i)
    assert len(fast.spool_files()) == n
    rnd = random.Random(7)
    kills = 0
    while fast.spool_files() and kills < 25:
        p = subprocess.Popen([MAILKEEP, '-c', fast.config, 'archive', 'ingest', '-q'],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.005, 0.15))
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
    fast.run('ingest')
    assert fast.spool_files() == []
    hits = fast.search('subject:ar-kill*')
    subjects = sorted(line.split()[6] for _id, line in hits)
    assert len(hits) == n, (len(hits), kills)
    assert subjects == ['ar-kill-%03d' % i for i in range(n)]
    r = fast.run('verify', check=False)
    assert r.returncode == 0 and 'intact' in r.stdout, r.stdout
