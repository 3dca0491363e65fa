"""mailkeep_crypt against a real Dovecot 2.3, Maildir and sdbox: mail
delivered over LMTP and appended over IMAP is encrypted on disk (no
Subject, Message-ID or body anywhere under the mail directory, index
files included) and reads back byte-identical over IMAP, POP3 and
doveadm; the escrow key opens it (an independent reader); a copy to
another user is theirs; a damaged file is reported, never served; plain
mail stays readable."""
import imaplib
import os
import poplib
import smtplib
import subprocess
import time

import pytest

import mkstack
from cryptenv import (MAGIC, CryptKeys, doveadm, files_under, grep_tree, open_with,
                      start_dovecot)

PASSWORD = mkstack.DEMO_PASSWORD


@pytest.fixture(scope='module', params=['maildir', 'sdbox'])
def stack(request):
    workdir = mkstack.make_workdir('mk-crypt-')
    slapd = mkstack.Slapd(workdir)
    slapd.start()
    keys = CryptKeys(workdir)
    location = 'maildir:~/Maildir' if request.param == 'maildir' else 'sdbox:~/sdbox'
    d = start_dovecot(os.path.join(workdir, 'dovecot'), slapd, keys, mail_location=location)
    try:
        yield d, keys, request.param
    finally:
        d.stop()
        slapd.stop()
        mkstack._remove_workdir(workdir)


def home(d, user):
    local, _, domain = user.partition('@')
    return os.path.join(d.mail_root, domain, local)


def message(tag, body_lines=3, filler=''):
    body = ''.join('Body line %d of %s, 機密 %s\r\n' % (i, tag, filler) for i in range(body_lines))
    return ('From: sender@example.net\r\nTo: alice@example.com\r\n'
            'Subject: Secret subject %s\r\nMessage-ID: <%s@example.net>\r\n'
            'Date: Mon, 23 Nov 2026 09:00:00 +0800\r\n'
            'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
            % (tag, tag) + body).encode()


def lmtp(d, rcpts, data):
    """One LMTP transaction; every recipient's reply must be 250 (smtplib
    reads only one reply after DATA)."""
    c = smtplib.LMTP(d.host, d.lmtp_port)
    try:
        c.ehlo_or_helo_if_needed()
        assert c.mail('sender@example.net')[0] == 250
        for r in rcpts:
            assert c.rcpt(r)[0] == 250
        assert c.putcmd('data') is None and c.getreply()[0] == 354
        body = data.replace(b'\r\n.', b'\r\n..')
        c.send(body + (b'.\r\n' if body.endswith(b'\r\n') else b'\r\n.\r\n'))
        replies = [c.getreply() for _ in rcpts]
        assert all(code == 250 for code, _ in replies), replies
        c.quit()
    finally:
        c.close()


def imap(d, user):
    c = imaplib.IMAP4(d.host, d.imap_port)
    c.login(user, PASSWORD)
    return c


def fetch_all(c, what='BODY.PEEK[]'):
    c.select('INBOX')
    typ, data = c.fetch('1:*', '(%s)' % what)
    assert typ == 'OK', data
    return [part[1] for part in data if isinstance(part, tuple)]


def needles(tag):
    return [b'Secret subject ' + tag.encode(), b'<' + tag.encode() + b'@example.net>',
            b'Body line 1 of ' + tag.encode(), tag.encode()]


def test_delivered_and_appended_mail_is_encrypted_and_reads_back(stack):
    d, keys, kind = stack
    user = 'alice@example.com'
    delivered = message('lmtpmark%s' % kind)
    appended = message('appendmark%s' % kind)
    big = message('bigmark%s' % kind, body_lines=6000)      # ~300 KB: many chunks
    lmtp(d, [user], delivered)
    lmtp(d, [user], big)
    c = imap(d, user)
    c.append('INBOX', None, None, appended)
    bodies = fetch_all(c)
    # Dovecot adds Return-Path and Delivered-To in front of what LMTP got
    assert bodies[0].endswith(delivered) and b'Return-Path:' in bodies[0]
    assert bodies[1].endswith(big)
    assert bodies[2] == appended
    # the envelope, a header field, a partial fetch in the middle (a seek),
    # the size, and a search over headers and body: all from the decrypted text
    c.select('INBOX')
    typ, data = c.fetch('3', '(ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)')
    assert b'appendmark' in data[0][0] and b'Secret subject appendmark' in data[0][1]
    assert ('RFC822.SIZE %d' % len(appended)).encode() in data[0][0]
    typ, data = c.fetch('2', '(BODY.PEEK[]<150000.5000>)')
    assert data[0][1] == bodies[1][150000:155000]
    typ, data = c.search(None, 'BODY', '"Body line 2 of appendmark%s"' % kind)
    assert data[0].split() == [b'3']
    typ, data = c.search(None, 'SUBJECT', '"lmtpmark%s"' % kind)
    assert data[0].split() == [b'1']
    c.logout()
    # POP3 and doveadm read the same
    p = poplib.POP3(d.host, d.pop3_port)
    p.user(user)
    p.pass_(PASSWORD)
    assert b'\r\n'.join(p.retr(3)[1]) + b'\r\n' == appended
    p.quit()
    out = doveadm(d, 'fetch', '-u', user, 'text', 'mailbox', 'INBOX', 'uid', '3').stdout
    assert b'Body line 2 of appendmark' in out
    # nothing of it in clear under the mail directory, indexes and caches included
    leaks = grep_tree(home(d, user), needles('lmtpmark' + kind) + needles('appendmark' + kind)
                      + needles('bigmark' + kind))
    assert leaks == set(), leaks
    # the message files carry the format's magic; the escrow key opens them
    opened = []
    for p in files_under(home(d, user)):
        data = open(p, 'rb').read()
        at = data.find(MAGIC)
        if at < 0:
            continue
        if kind == 'maildir':
            assert at == 0
            opened.append(open_with(keys.escrow, data))
    if kind == 'maildir':               # Dovecot stores LF line ends (mail_save_crlf = no)
        assert sorted(opened, key=len) == sorted((b.replace(b'\r\n', b'\n') for b in bodies),
                                                 key=len)
    assert len([p for p in files_under(home(d, user)) if MAGIC in open(p, 'rb').read()]) >= 3


def test_a_user_key_file_is_made_once_and_sealed(stack):
    d, keys, kind = stack
    path = os.path.join(keys.keys, 'alice@example.com')
    text = open(path).read()
    assert text.startswith('mailkeep-crypt-keys 1\nuser alice@example.com\nkey ')
    assert '\nescrow ' in text and '\nactive ' in text
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'


def test_copy_to_another_user_is_encrypted_for_them(stack):
    d, keys, kind = stack
    data = message('twomark%s' % kind)
    lmtp(d, ['bob@example.com', 'carol@example.com'], data)
    for user in ('bob@example.com', 'carol@example.com'):
        c = imap(d, user)
        assert fetch_all(c)[-1].endswith(data)
        c.logout()
        assert grep_tree(home(d, user), needles('twomark' + kind)) == set()
    # separate files, each its user's (no hard link across users)
    inodes = {}
    for user in ('bob@example.com', 'carol@example.com'):
        for p in files_under(home(d, user)):
            if MAGIC in open(p, 'rb').read():
                inodes.setdefault(user, set()).add(os.stat(p).st_ino)
    assert inodes['bob@example.com'].isdisjoint(inodes['carol@example.com'])


def test_a_damaged_message_is_reported_not_served(stack):
    d, keys, kind = stack
    user = 'dave@example.com'
    data = message('tampermark%s' % kind, body_lines=200)
    lmtp(d, [user], data)
    target = None
    for p in files_under(home(d, user)):
        blob = open(p, 'rb').read()
        at = blob.find(MAGIC)
        if at >= 0:
            target, offset = p, at + 44 + 2 * 57 + 100
    assert target is not None
    with open(target, 'r+b') as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))
    c = imap(d, user)
    c.select('INBOX')
    try:
        typ, got = c.fetch('1', '(BODY.PEEK[])')
        served = typ == 'OK' and any(isinstance(x, tuple) and b'Body line 1' in x[1]
                                     for x in got)
    except (imaplib.IMAP4.abort, imaplib.IMAP4.error):
        served = False
    assert not served
    time.sleep(0.5)
    assert 'does not authenticate' in d.log()


def test_plain_mail_stays_readable(stack):
    d, keys, kind = stack
    user = 'erin@example.com'
    plain = message('plainmark%s' % kind)
    # saved while the plugin writes plain mail, read with it writing encrypted
    subprocess.run(['doveadm', '-c', d.conf_path, '-o', 'plugin/mailkeep_crypt=no', 'save',
                    '-u', user], input=plain, check=True, capture_output=True, timeout=60)
    assert grep_tree(home(d, user), [b'Body line 1 of plainmark']) != set()
    lmtp(d, [user], message('newmark%s' % kind))
    c = imap(d, user)
    bodies = fetch_all(c)
    c.logout()
    assert bodies[0] == plain
    assert bodies[1].endswith(message('newmark%s' % kind))
