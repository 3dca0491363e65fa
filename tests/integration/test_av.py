"""mailkeep-av through the real Postfix, with an embedded ClamAV engine and
signatures the tests make themselves (no download)."""
import base64
import email
import email.policy
import hashlib
import os
import re
import subprocess
import tempfile
import threading
import time
from email.message import EmailMessage

import pytest

import mkstack
from milterenv import BUILDDIR, MAILKEEP, Milter, write
from mkdocs import encrypted_zip, zip_bytes

AV = os.path.join(BUILDDIR, 'milters', 'av', 'mailkeep-av')
EICAR = (b'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*')
OTHER = b'MAILKEEP-TEST-MALWARE-SAMPLE-2026\n'


def hdb_line(data, name):
    """A ClamAV MD5 signature for exactly these bytes, made by sigtool as a
    site would, under our own signature name."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name)
        with open(path, 'wb') as f:
            f.write(data)
        line = subprocess.run(['sigtool', '--md5', path], capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()
    md5, size, _name = line.split(':', 2)
    assert md5 == hashlib.md5(data).hexdigest() and int(size) == len(data)
    return '%s:%s:%s\n' % (md5, size, name)


class AvMilter(Milter):
    binary = AV
    name = 'mailkeep-av'

    def __init__(self, workdir, slapd):
        super().__init__(workdir, 'av')
        self.slapd = slapd
        self.db = self.path('db')
        os.makedirs(self.db, exist_ok=True)
        write(os.path.join(self.db, 'eicar.hdb'), hdb_line(EICAR, 'Eicar-Test-Signature'))
        self.write_config()

    def config_text(self, extra_av=''):
        return ('[global]\nlog = stderr\ndirectory = ldap\nreload_interval = 1s\n'
                'trusted_networks = 127.0.0.0/8 ::1/128\n'
                '[ldap]\nuri = %s\nbase = %s\nbind_dn = %s\nbind_password = %s\n'
                '[av]\nsocket = inet:%d@127.0.0.1\ndatabase_dir = %s\nmemory_limit = 64k\n'
                'temp_dir = %s\nmax_filesize = 1M\nmax_recursion = 6\n%s'
                % (self.slapd.uri, self.slapd.base_dn, self.slapd.service_dn,
                   self.slapd.service_pw, self.port, self.db, self.dir, extra_av))

    def write_config(self, extra_av=''):
        write(self.config, self.config_text(extra_av))


@pytest.fixture(scope='module')
def env():
    st = mkstack.Stack()
    av = None
    try:
        st.slapd.start()
        st.start()
        av = AvMilter(st.workdir, st.slapd).start()
        st.postfix.set_params(smtpd_milters=av.socket)
        yield st, av
    finally:
        if av:
            av.stop()
        st.stop()


def with_attachment(subject, name, data, ctype='application/octet-stream'):
    msg = EmailMessage()
    msg['From'] = 'stranger@outside.example'
    msg['To'] = 'alice@example.com'
    msg['Subject'] = subject
    msg.set_content('see the attachment')
    maintype, subtype = ctype.split('/')
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def inbound(st, data, client='203.0.113.90'):
    return st.send('stranger@outside.example', ['alice@example.com'], data=data,
                   xclient={'ADDR': client, 'NAME': '[UNAVAILABLE]'})


def delivered(st, marker, timeout=20):
    try:
        st.wait_for_message('alice@example.com', marker, timeout=timeout)
        return True
    except TimeoutError:
        return False


def test_clean_mail_is_delivered(env):
    st, _ = env
    res = inbound(st, with_attachment('av-clean', 'notes.txt', b'nothing to see here\n'))
    assert res.ok, res.describe()
    assert delivered(st, 'av-clean')


@pytest.mark.parametrize('how', ['plain', 'nested-zip', 'attached-message', 'large-body'])
def test_eicar_is_refused_however_it_is_wrapped(env, how):
    st, av = env
    if how == 'plain':
        data = with_attachment('av-' + how, 'eicar.com', EICAR)
    elif how == 'nested-zip':
        inner = zip_bytes([('deep/eicar.com', EICAR)])
        data = with_attachment('av-' + how, 'outer.zip', zip_bytes([('inner.zip', inner)]),
                               'application/zip')
    elif how == 'attached-message':
        inner = EmailMessage()
        inner['Subject'] = 'forwarded'
        inner.set_content('inner')
        inner.add_attachment(EICAR, maintype='application', subtype='octet-stream',
                             filename='eicar.com')
        outer = EmailMessage()
        outer['From'] = 'stranger@outside.example'
        outer['Subject'] = 'av-' + how
        outer.set_content('fwd')
        outer.add_attachment(inner)
        data = outer.as_bytes()
    else:                                       # beyond memory_limit: scanned from a temp file
        msg = EmailMessage()
        msg['From'] = 'stranger@outside.example'
        msg['Subject'] = 'av-' + how
        msg.set_content('x' * 200000)
        msg.add_attachment(EICAR, maintype='application', subtype='octet-stream',
                           filename='eicar.com')
        data = msg.as_bytes()
    res = inbound(st, data)
    assert not res.ok and res.data[0] == 550, res.describe()
    assert 'virus found: Eicar-Test-Signature' in res.data[1]
    assert 'reject: from [203.0.113.90]: Eicar-Test-Signature' in av.log()


def test_encrypted_zip_is_quarantined_with_reason(env):
    st, av = env
    res = inbound(st, with_attachment('av-encrypted', 'locked.zip',
                                      encrypted_zip('secret.txt', b'hidden\n'), 'application/zip'))
    assert res.ok, res.describe()
    # the quarantine command reads [quarantine] postfix_config: point it at this Postfix
    conf = av.path('q.conf')
    write(conf, '[quarantine]\npostfix_config = %s\n' % st.postfix.config_dir)
    r = subprocess.run([MAILKEEP, '-c', conf, 'quarantine', 'list'], capture_output=True,
                       text=True, timeout=60)
    assert res.queue_id in r.stdout, (r.stdout, r.stderr)
    assert 'mailkeep-av: unscannable: Heuristics.Encrypted' in r.stdout
    assert not delivered(st, 'av-encrypted', timeout=2)


@pytest.mark.parametrize('bomb', ['nested', 'oversized'])
def test_exceeded_limits_are_not_passed_silently(env, bomb):
    st, av = env
    if bomb == 'nested':                        # 42.zip-style: deeper than max_recursion
        data = b'deep\n'
        for level in range(10):
            data = zip_bytes([('level%d.zip' % level if level else 'a.txt', data)])
    else:                                       # a member larger than max_filesize
        data = zip_bytes([('random.bin', os.urandom(3 << 20))])
    marker = 'av-limits-' + bomb
    res = inbound(st, with_attachment(marker, 'bomb.zip', data, 'application/zip'))
    assert res.ok, res.describe()               # limits_action = quarantine
    assert 'quarantine: from [203.0.113.90]: Heuristics.Limits.Exceeded' in av.log()
    assert not delivered(st, marker, timeout=2)
    assert res.queue_id.encode() in st.postfix.postqueue('-p').stdout   # held, not gone


def test_new_signatures_are_picked_up_live_with_no_mail_lost(env):
    st, av = env
    pid = av.daemon.pid
    res = inbound(st, with_attachment('av-before-reload', 'sample.bin', OTHER))
    assert res.ok, res.describe()
    results = []
    stop = threading.Event()

    def stream():
        i = 0
        while not stop.is_set():
            r = inbound(st, with_attachment('av-stream-%d' % i, 'ok.txt', b'fine\n'),
                        client='203.0.113.91')
            results.append(r)
            i += 1

    t = threading.Thread(target=stream)
    t.start()
    before = len(av.log())
    write(os.path.join(av.db, 'local.hdb'), hdb_line(OTHER, 'Mailkeep-Test-Malware'))
    assert av.wait_log('watched file changed: configuration generation', start=before, timeout=30)
    time.sleep(1)
    stop.set()
    t.join()
    assert results and all(r.ok for r in results), [r.describe() for r in results if not r.ok]
    res = inbound(st, with_attachment('av-after-reload', 'sample.bin', OTHER))
    assert res.data[0] == 550 and 'Mailkeep-Test-Malware' in res.data[1], res.describe()
    assert av.daemon.pid == pid


def test_outbound_action_quarantines(env):
    st, av = env
    av.write_config('outbound_action = quarantine\n')
    av.reload_and_wait()
    try:
        msg = EmailMessage()
        msg['From'] = 'alice@example.com'
        msg['Subject'] = 'av-outbound'
        msg.set_content('x')
        msg.add_attachment(EICAR, maintype='application', subtype='octet-stream',
                           filename='eicar.com')
        res = st.send('alice@example.com', ['partner@partner.example'], data=msg.as_bytes(),
                      auth=('alice@example.com', 'mailkeep'))
        assert res.ok, res.describe()
        assert 'quarantine: from' in av.log()
    finally:
        av.write_config()
        av.reload_and_wait()


def test_killed_milter_tempfails(env):
    st, av = env
    av.daemon.kill9()
    res = inbound(st, with_attachment('av-down', 'a.txt', b'a\n'))
    assert not res.ok and any(400 <= c < 500 for _s, c, _t in res.stages), res.describe()
    av.start()
    res = inbound(st, with_attachment('av-down', 'a.txt', b'a\n'))
    assert res.ok and delivered(st, 'av-down')


def test_replace_cuts_out_the_infected_part_and_keeps_the_rest(env):
    st, av = env
    av.write_config('inbound_action = replace\n')
    av.reload_and_wait()
    try:
        msg = EmailMessage()
        msg['From'] = 'stranger@outside.example'
        msg['To'] = 'alice@example.com'
        msg['Subject'] = 'av-cut-ok'
        msg.set_content('the report is attached\n')
        msg.add_attachment(b'quarterly numbers\n', maintype='application', subtype='octet-stream',
                           filename='report.bin')
        msg.add_attachment(EICAR, maintype='application', subtype='octet-stream',
                           filename='eicar.com')
        res = inbound(st, msg.as_bytes())
        assert res.ok, res.describe()
        raw = st.wait_for_message('alice@example.com', 'av-cut-ok')
        assert EICAR not in raw
        got = email.message_from_bytes(raw, policy=email.policy.default)
        assert re.search(r'removed: Eicar-Test-Signature(\.UNOFFICIAL)? in "eicar.com"',
                         got['X-Mailkeep-AV']), got['X-Mailkeep-AV']
        parts = {p.get_filename(): p for p in got.iter_attachments()}
        assert set(parts) == {'report.bin', 'virus-removed.txt'}, list(parts)
        assert parts['report.bin'].get_content() == b'quarterly numbers\n'
        notice = parts['virus-removed.txt'].get_content()
        assert '"eicar.com"' in notice and 'Eicar-Test-Signature' in notice and '含有病毒' in notice
        assert got.get_body(('plain',)).get_content().replace('\r\n', '\n') == 'the report is attached\n'
        assert 'replace: 1 part(s) removed' in av.log()

        # nothing but the virus: there is no part to cut out, so it is held
        res = inbound(st, b'From: stranger@outside.example\r\nSubject: av-cut-single\r\n'
                      b'MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n'
                      b'Content-Transfer-Encoding: base64\r\n\r\n'
                      + base64.encodebytes(EICAR).replace(b'\n', b'\r\n'))
        assert res.ok, res.describe()
        assert re.search(r'quarantine: Eicar-Test-Signature\S* cannot be cut out', av.log())
        assert res.queue_id.encode() in st.postfix.postqueue('-p').stdout
        assert not delivered(st, 'av-cut-single', timeout=2)
    finally:
        av.write_config()
        av.reload_and_wait()


def test_notices_go_to_admin_local_sender_and_recipients(env):
    st, av = env
    av.write_config('internal_action = quarantine\ninbound_action = quarantine\n'
                    'notify_admin = bob@example.com\nnotify_recipients = yes\n'
                    'notify_from = postmaster@example.com\n'
                    'notify_command = /usr/sbin/sendmail -C %s -oi -t\n'
                    % st.postfix.config_dir)
    av.reload_and_wait()
    try:
        # internal mail from a local user: everyone concerned hears of it
        msg = with_attachment('av-notice-internal', 'eicar.com', EICAR)
        res = st.send('alice@example.com', ['carol@example.com'], data=msg,
                      auth=('alice@example.com', 'mailkeep'))
        assert res.ok, res.describe()
        for user, subject in (('bob@example.com', 'Virus alert'),
                              ('alice@example.com', 'Your message contained a virus'),
                              ('carol@example.com', 'A message to you contained a virus')):
            raw = st.wait_for_message(user, lambda b, s=subject, q=res.queue_id:
                                      s.encode() in b and q.encode() in b)
            got = email.message_from_bytes(raw, policy=email.policy.default)
            assert got['Auto-Submitted'] == 'auto-generated'
            text = got.get_content()
            assert 'held in quarantine' in text and 'Eicar-Test-Signature' in text
            assert '已被隔離' in text
            assert EICAR not in raw
        # inbound: an outside sender is not told (its address is too often forged)
        before = len(av.log())
        res = inbound(st, with_attachment('av-notice-inbound', 'eicar.com', EICAR))
        assert res.ok, res.describe()
        st.wait_for_message('bob@example.com', lambda b, q=res.queue_id: q.encode() in b)
        log = av.log()[before:]
        assert 'notice sent to bob@example.com' in log
        assert 'notice sent to alice@example.com' in log          # the recipient
        assert 'stranger@outside.example' not in log.split('notice sent to', 1)[1]
    finally:
        av.write_config()
        av.reload_and_wait()


def test_freshclam_temporary_directories_do_not_rebuild_the_engine(env):
    _st, av = env
    before = len(av.log())
    tmp = os.path.join(av.db, 'tmp.7f3a1c')     # what freshclam makes at every check
    os.mkdir(tmp)
    write(os.path.join(tmp, 'clamav-1234.tmp'), 'partial download')
    time.sleep(2.5)                             # more than two reload intervals
    os.unlink(os.path.join(tmp, 'clamav-1234.tmp'))
    os.rmdir(tmp)
    time.sleep(2.5)
    assert 'watched file changed' not in av.log()[before:]
    # a new database file in the directory still is a change
    write(os.path.join(av.db, 'extra.ndb'), 'Mailkeep-Test-Ndb:0:*:4d41494c4b4545502d4e44422d54455354\n')
    assert av.wait_log('watched file changed: configuration generation', start=before, timeout=30)
