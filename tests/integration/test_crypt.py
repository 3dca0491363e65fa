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
from cryptenv import (MAGIC, PLUGIN, CryptKeys, doveadm, files_under, grep_tree, open_with,
                      start_dovecot)
from milterenv import MAILKEEP

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
    # what Dovecot would cache: the structure, a snippet, header fields
    out = doveadm(d, 'fetch', '-u', user, 'body.snippet imap.bodystructure hdr.subject',
                  'mailbox', 'INBOX').stdout
    assert b'Body line 0 of appendmark' in out and b'Secret subject appendmark' in out
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
    # saved unencrypted, a message may not start like an encrypted one:
    # it would be taken for one when read
    forged = MAGIC + b'\x01\x10\x01\x00' + plain
    cp = subprocess.run(['doveadm', '-c', d.conf_path, '-o', 'plugin/mailkeep_crypt=no', 'save',
                         '-u', user], input=forged, capture_output=True, timeout=60)
    assert cp.returncode != 0 and b'starts like an encrypted one' in cp.stderr
    c = imap(d, user)
    assert len(fetch_all(c)) == 2
    c.logout()
    # settings that would leave mail in clear, or unreadable, stop the session
    for opt, word in (('plugin/zlib_save=gz', b'zlib_save'),
                      ('mail_attachment_dir=/tmp', b'mail_attachment_dir')):
        cp = subprocess.run(['doveadm', '-c', d.conf_path, '-o', opt, 'save', '-u', user],
                            input=plain, capture_output=True, timeout=60)
        assert cp.returncode != 0 and word in cp.stderr, cp.stderr


def mailkeep(conf, *args):
    return subprocess.run([MAILKEEP, '-c', conf] + list(args), capture_output=True, text=True,
                          timeout=60)


def crypt_conf(keys, path):
    with open(path, 'w') as f:
        f.write('[crypt]\nkeys = %s\nserver_key = %s\nescrow_key = %s\nmail_user = mail\n'
                % (keys.keys, keys.server_key, keys.escrow_pub))
    return path


def slot_ids(data):
    """The key ids of a message's slots (kind, id hex)."""
    at = data.find(MAGIC)
    return [(data[at + 44 + 57 * i], data[at + 45 + 57 * i:at + 53 + 57 * i].hex())
            for i in range(data[at + 10])]


def test_status_and_rotation(stack, tmp_path):
    """mailkeep crypt status lists the keys; rotate makes a new active key:
    new mail is encrypted to it, older mail stays readable."""
    d, keys, kind = stack
    conf = crypt_conf(keys, str(tmp_path / 'mailkeep.conf'))
    user = 'frank@example.com'
    first = message('rot1mark%s' % kind)
    lmtp(d, [user], first)
    out = mailkeep(conf, 'crypt', 'status', user)
    assert out.returncode == 0 and out.stdout.count(', active, escrow') == 1, out
    old_id = out.stdout.split()[2].rstrip(',')
    cp = mailkeep(conf, 'crypt', 'rotate', user)
    assert cp.returncode == 0 and 'new active key' in cp.stdout, cp.stderr
    new_id = cp.stdout.split()[4].rstrip(';')
    assert new_id != old_id
    second = message('rot2mark%s' % kind)
    lmtp(d, [user], second)
    ids = {}
    for p in files_under(home(d, user)):
        data = open(p, 'rb').read()
        if MAGIC in data:
            ids[p] = slot_ids(data)
    users_keys = sorted(i for slots in ids.values() for k, i in slots if k == 1)
    assert users_keys == sorted([old_id, new_id]), ids
    c = imap(d, user)
    bodies = fetch_all(c)
    c.logout()
    assert bodies[0].endswith(first) and bodies[1].endswith(second)
    listing = mailkeep(conf, 'crypt', 'status').stdout
    assert listing.count(user + ': key') == 2
    assert mailkeep(conf, 'crypt', 'rotate', 'nobody@example.com').returncode == 1
    # rotate -r: a third key, and every message given to it (headers
    # rewritten in place; the bodies and the sizes stay)
    with open(conf, 'a') as f:
        f.write('doveadm = doveadm -c %s\ndoveconf = doveconf -c %s\n'
                % (d.conf_path, d.conf_path))
    files = [p for p in files_under(home(d, user)) if MAGIC in open(p, 'rb').read()]
    sizes = {p: os.path.getsize(p) for p in files}
    cp = mailkeep(conf, 'crypt', 'rotate', '-r', user)
    assert cp.returncode == 0 and '2 messages given to the new key' in cp.stdout, cp
    third = cp.stdout.split()[4].rstrip(';')
    for p in files:
        data = open(p, 'rb').read()
        assert [i for k, i in slot_ids(data) if k == 1] == [third]
        assert [k for k, i in slot_ids(data)] == [1, 2]             # escrow kept
        assert os.path.getsize(p) == sizes[p]
    c = imap(d, user)
    assert [b[-len(first):] for b in fetch_all(c)[:2]] == [first, second]
    c.logout()
    # once more: a fourth key; the messages follow again and still read
    cp = mailkeep(conf, 'crypt', 'rotate', '-r', user)
    assert cp.returncode == 0 and '2 messages given to the new key' in cp.stdout
    c = imap(d, user)
    assert [b[-len(first):] for b in fetch_all(c)[:2]] == [first, second]
    c.logout()


def test_init_makes_keys_once(tmp_path):
    keys_dir = tmp_path / 'k'
    conf = tmp_path / 'mailkeep.conf'
    conf.write_text('[crypt]\nkeys = %s\nserver_key = %s\nescrow_key = %s\n'
                    % (keys_dir, tmp_path / 'server.key', tmp_path / 'escrow.pub'))
    cp = mailkeep(str(conf), 'crypt', 'init', '-e', str(tmp_path / 'escrow.key'))
    assert cp.returncode == 0, cp.stderr
    assert oct(os.stat(keys_dir).st_mode & 0o777) == '0o700'
    assert oct(os.stat(tmp_path / 'server.key').st_mode & 0o777) == '0o600'
    assert len((tmp_path / 'server.key').read_text().strip()) == 64
    assert oct(os.stat(tmp_path / 'escrow.key').st_mode & 0o777) == '0o600'
    assert len((tmp_path / 'escrow.pub').read_text().strip()) == 64
    before = (tmp_path / 'server.key').read_text()
    cp = mailkeep(str(conf), 'crypt', 'init', '-e', str(tmp_path / 'escrow2.key'))
    assert cp.returncode == 1 and 'never replaced' in cp.stderr
    assert (tmp_path / 'server.key').read_text() == before
    assert not (tmp_path / 'escrow2.key').exists()


# ---- keys sealed by the user's password: change and escrow recovery

@pytest.fixture(scope='module')
def pw_stack():
    from cryptography.hazmat.primitives import serialization
    from mkaudit import AuditD
    workdir = mkstack.make_workdir('mk-crypt-pw-')
    slapd = mkstack.Slapd(workdir)
    slapd.start()
    keys = CryptKeys(workdir)
    audit = AuditD(os.path.join(workdir, 'auditd')).start()
    d = mkstack.Dovecot(os.path.join(workdir, 'dovecot'), slapd, mail_plugins='mailkeep_crypt',
                        plugin_modules=[PLUGIN], plugin_settings=keys.plugin_settings(),
                        user_attrs=', mailkeepCryptProtect=mailkeep_crypt_protect')
    # the policy per user, from the directory: grace and wei by their password
    for uid in ('grace', 'wei'):
        slapd.modify('dn: %s\nchangetype: modify\nadd: mailkeepCryptProtect\n'
                     'mailkeepCryptProtect: password\n' % slapd.user_dn(uid))
    # the login's password reaches the plugin as a userdb field
    d.passdb = ('  driver = ldap\n  args = %s/ldap-passdb.conf.ext\n'
                '  override_fields = userdb_mailkeep_crypt_password=%%w' % d.dir)
    d.start()
    escrow_key = os.path.join(workdir, 'escrow.key')
    with open(os.open(escrow_key, os.O_WRONLY | os.O_CREAT, 0o600), 'w') as f:
        f.write(keys.escrow.private_bytes(serialization.Encoding.Raw,
                                          serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption()).hex() + '\n')
    conf = os.path.join(workdir, 'mailkeep.conf')
    with open(conf, 'w') as f:
        f.write('[global]\nstate_dir = %s\n[audit]\nsocket = %s\n'
                '[crypt]\nkeys = %s\nserver_key = %s\nescrow_key = %s\n'
                % (workdir, audit.socket, keys.keys, keys.server_key, keys.escrow_pub))
    try:
        yield d, keys, slapd, audit, conf, escrow_key
    finally:
        d.stop()
        audit.stop()
        slapd.stop()
        mkstack._remove_workdir(workdir)


def imap_read_all(d, user, password):
    """Every message of INBOX, or None when the server cannot read them."""
    c = imaplib.IMAP4(d.host, d.imap_port)
    c.login(user, password)
    try:
        c.select('INBOX')
        typ, data = c.fetch('1:*', '(BODY.PEEK[])')
        if typ != 'OK':
            return None
        return [x[1] for x in data if isinstance(x, tuple)]
    except (imaplib.IMAP4.abort, imaplib.IMAP4.error):
        return None
    finally:
        try:
            c.logout()
        except Exception:
            pass


def set_ldap_password(slapd, uid, password):
    slapd.modify('dn: %s\nchangetype: modify\nreplace: userPassword\nuserPassword: %s\n'
                 % (slapd.user_dn(uid), password))


def keyfile(keys, user):
    return open(os.path.join(keys.keys, user)).read()


def test_keys_sealed_by_the_password(pw_stack):
    d, keys, slapd, audit, conf, escrow_key = pw_stack
    user = 'grace@example.com'
    first = message('pw1mark')
    lmtp(d, [user], first)
    # a delivery has no password: the first key waits, sealed by the server key
    assert ' server ' in keyfile(keys, user)
    bodies = imap_read_all(d, user, PASSWORD)
    assert bodies is not None and bodies[0].endswith(first)
    # the login sealed it by the password: the server key opens nothing now
    text = keyfile(keys, user)
    assert ' password 15 ' in text and ' server ' not in text
    # doveadm has no password: it cannot read; given it, it can
    cp = subprocess.run(['doveadm', '-c', d.conf_path, 'fetch', '-u', user, 'text', 'all'],
                        capture_output=True, timeout=60)
    assert b'Body line 1 of pw1mark' not in cp.stdout
    cp = subprocess.run(['doveadm', '-c', d.conf_path, '-o',
                         'plugin/mailkeep_crypt_password=' + PASSWORD, 'fetch', '-u', user,
                         'text', 'all'], capture_output=True, timeout=60)
    assert b'Body line 1 of pw1mark' in cp.stdout
    # wei's key is sealed by the password too; a delivery to both reads
    # grace's copy for wei without any password (the data key is at hand)
    lmtp(d, ['wei@example.org'], message('pwweimark'))
    assert len(imap_read_all(d, 'wei@example.org', PASSWORD)) == 1
    lmtp(d, [user], message('pw0mark'))
    both = message('pw2mark')
    lmtp(d, [user, 'wei@example.org'], both)
    assert imap_read_all(d, 'wei@example.org', PASSWORD)[-1].endswith(both)
    assert ' password ' in keyfile(keys, 'wei@example.org')
    # a user without the attribute keeps the server key's seal after a login
    lmtp(d, ['erin@example.com'], message('pwerinmark'))
    assert len(imap_read_all(d, 'erin@example.com', PASSWORD)) == 1
    assert ' server ' in keyfile(keys, 'erin@example.com')


def test_password_change_keeps_mail_readable(pw_stack):
    d, keys, slapd, audit, conf, escrow_key = pw_stack
    user = 'grace@example.com'
    set_ldap_password(slapd, 'grace', 'n3w-Secret')
    cp = subprocess.run([MAILKEEP, '-c', conf, 'crypt', 'password', user],
                        input='wrong\nn3w-Secret\n', capture_output=True, text=True, timeout=60)
    assert cp.returncode == 1 and 'nothing changed' in cp.stderr
    cp = subprocess.run([MAILKEEP, '-c', conf, 'crypt', 'password', user],
                        input='%s\nn3w-Secret\n' % PASSWORD, capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0 and 'sealed by the new password' in cp.stdout, cp.stderr
    bodies = imap_read_all(d, user, 'n3w-Secret')
    assert bodies is not None and len(bodies) == 3 and bodies[0].endswith(message('pw1mark'))


def test_lost_password_recovered_with_escrow_under_dual_control(pw_stack):
    d, keys, slapd, audit, conf, escrow_key = pw_stack
    user = 'grace@example.com'

    def crypt(admin, *args, input=None):
        return subprocess.run([MAILKEEP, '-c', conf, 'crypt'] + list(args), input=input,
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, SUDO_USER=admin))

    # an administrator resets the password in the directory only: the mail
    # does not open with the new one
    set_ldap_password(slapd, 'grace', 'r3set-Pass')
    assert imap_read_all(d, user, 'r3set-Pass') is None
    assert "the user's key does not open with the password" in d.log()
    cp = crypt('officer1', 'request', user, 'lost', 'password,', 'ticket', '4711')
    assert cp.returncode == 0, cp.stderr
    rid = cp.stdout.split()[1].rstrip(':')
    # nobody approves their own request, and nothing recovers unapproved
    assert crypt('officer1', 'approve', rid).returncode == 1
    cp = crypt('officer1', 'recover', '-k', escrow_key, rid, input='r3set-Pass\n')
    assert cp.returncode == 1 and 'not approved' in cp.stderr
    cp = crypt('officer2', 'approve', rid)
    assert cp.returncode == 0, cp.stderr
    cp = crypt('officer1', 'recover', '-k', escrow_key, rid, input='r3set-Pass\n')
    assert cp.returncode == 0 and 'approved by officer2' in cp.stdout, cp.stderr
    bodies = imap_read_all(d, user, 'r3set-Pass')
    assert bodies is not None and len(bodies) == 3
    # a request is used once; every step is in the audit log
    assert crypt('officer1', 'recover', '-k', escrow_key, rid, input='x\n').returncode == 1
    audit.sync()
    ops = [(r.get('op'), r.get('admin')) for r in audit.records(user=user)]
    assert ('crypt-recovery-request', 'officer1') in ops
    assert ('crypt-recovery-approve', 'officer2') in ops
    assert ('crypt-recover', 'officer1') in ops
    # the wrong escrow key opens nothing
    cp = crypt('officer3', 'request', user, 'again')
    rid2 = cp.stdout.split()[1].rstrip(':')
    assert crypt('officer4', 'approve', rid2).returncode == 0
    bad = escrow_key + '.bad'
    with open(os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600), 'w') as f:
        f.write(os.urandom(32).hex() + '\n')
    cp = crypt('officer3', 'recover', '-k', bad, rid2, input='zzz\n')
    assert cp.returncode == 1
    assert imap_read_all(d, user, 'r3set-Pass') is not None


def test_encrypt_existing_keeps_uids_and_flags(stack, tmp_path):
    """Plain mail saved before the plugin, with flags, keywords and a second
    mailbox, converted in place: UIDs, UIDVALIDITY and flags as they were,
    nothing in clear left, the same text read back."""
    d, keys, kind = stack
    user = 'wei@example.org'
    conf = crypt_conf(keys, str(tmp_path / 'mailkeep.conf'))
    with open(conf, 'a') as f:
        f.write('doveadm = doveadm -c %s\ndoveconf = doveconf -c %s\n'
                % (d.conf_path, d.conf_path))
    plain = [message('convmark%d%s' % (i, kind)) for i in range(4)]
    for m in plain:
        subprocess.run(['doveadm', '-c', d.conf_path, '-o', 'plugin/mailkeep_crypt=no', 'save',
                        '-u', user], input=m, check=True, capture_output=True, timeout=60)
    c = imap(d, user)
    c.select('INBOX')
    c.store('2', '+FLAGS', '(\\Seen $Work)')
    c.store('4', '+FLAGS', '(\\Flagged)')
    c.create('Archive')
    c.copy('1:2', 'Archive')
    c.logout()

    def state():
        return subprocess.run(['doveadm', '-c', d.conf_path, 'fetch', '-u', user,
                               'mailbox uid flags text', 'all'],
                              capture_output=True, timeout=60).stdout.replace(b'\\Recent ', b'')

    def uidvalidity():
        return subprocess.run(['doveadm', '-c', d.conf_path, 'mailbox', 'status', '-u', user,
                               'uidvalidity uidnext', '*'], capture_output=True, text=True,
                              timeout=60).stdout

    before, validity = state(), uidvalidity()
    assert b'convmark1' in before and grep_tree(home(d, user), [b'Body line 1 of convmark'])
    cp = mailkeep(conf, 'crypt', 'encrypt-existing', user)
    assert cp.returncode == 0, cp.stderr
    assert state() == before and uidvalidity() == validity
    assert grep_tree(home(d, user), [b'Body line 1 of convmark', b'Secret subject convmark']) \
        == set()
    assert not any(p.endswith('.mkcrypt-plain') for p in os.listdir(home(d, user)))
    # new mail after the conversion lands in the converted mailboxes
    lmtp(d, [user], message('afterconv%s' % kind))
    c = imap(d, user)
    assert fetch_all(c)[-1].endswith(message('afterconv%s' % kind))
    c.logout()
    # a leftover of an interrupted run stops the next one
    os.mkdir(os.path.join(home(d, user), ('Maildir' if kind == 'maildir' else 'sdbox')
                          + '.mkcrypt-new'))
    cp = mailkeep(conf, 'crypt', 'encrypt-existing', user)
    assert cp.returncode == 1 and 'did not finish' in cp.stderr
