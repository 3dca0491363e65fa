"""mailkeep-dlp through the real Postfix, with Dovecot delivering, slapd as
the directory and smtp-sink standing for the outside world."""
import email
import email.header
import json
import os
import subprocess
import time
from email.message import EmailMessage

import pytest

import mkstack
from milterenv import MAILKEEP
from dlpenv import ID_TEXT, VALID_ID, DlpMilter
from mkdocs import docx

OUTSIDER = 'stranger@outside.example'
PARTNER = 'partner@partner.example'


@pytest.fixture(scope='module')
def env():
    st = mkstack.Stack()
    dlp = None
    try:
        st.slapd.start()
        # Postfix's config dir is known only once it exists; create the
        # stack first, then point the milter's notices and quarantine at it.
        st.start()
        dlp = DlpMilter(st.workdir, st.slapd, st.postfix.config_dir).start()
        st.postfix.set_params(smtpd_milters=dlp.socket, non_smtpd_milters=dlp.socket)
        yield st, dlp
    finally:
        if dlp:
            dlp.stop()
        st.stop()


def message(sender, rcpts, subject, body, attachments=()):
    msg = EmailMessage()
    msg['From'] = sender
    msg['To'] = ', '.join(rcpts)
    msg['Subject'] = subject
    msg['Message-ID'] = email.utils.make_msgid(domain='client.example')
    msg.set_content(body)
    for name, ctype, data in attachments:
        maintype, subtype = ctype.split('/')
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def send_direction(st, direction, subject, body, attachments=()):
    """Send a message in the given direction; returns (result, recipient, sender)."""
    if direction == 'inbound':
        sender, rcpt = OUTSIDER, 'alice@example.com'
        kw = {'xclient': {'ADDR': '203.0.113.80', 'NAME': '[UNAVAILABLE]'}}
    elif direction == 'outbound':
        sender, rcpt = 'alice@example.com', PARTNER
        kw = {'auth': ('alice@example.com', 'mailkeep')}
    else:
        sender, rcpt = 'alice@example.com', 'bob@example.com'
        kw = {'auth': ('alice@example.com', 'mailkeep')}
    data = message(sender, [rcpt], subject, body, attachments)
    return st.send(sender, [rcpt], data=data, **kw), rcpt, sender


def find_delivered(st, rcpt, marker, timeout=20):
    """The delivered copy (raw bytes) for a local user or the sink, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rcpt.endswith('@example.com') or rcpt.endswith('@example.org'):
            for _uid, raw in st.imap_messages(rcpt):
                if marker.encode() in raw:
                    return raw
        else:
            for raw in st.sink.messages():
                if marker.encode() in raw:
                    return raw
        time.sleep(0.2)
    return None


def incidents(dlp):
    if not os.path.exists(dlp.incidents):
        return []
    with open(dlp.incidents) as f:
        return [json.loads(line) for line in f if line.strip()]


def mailkeep(dlp, *args):
    return subprocess.run([MAILKEEP, '-c', dlp.config] + list(args), capture_output=True,
                          text=True, timeout=60)


def subject_of(raw):
    return str(email.header.make_header(email.header.decode_header(
        email.message_from_bytes(raw)['Subject'])))


ACTIONS = ['log', 'tag', 'warn', 'quarantine', 'reject']
DIRECTIONS = ['inbound', 'outbound', 'internal']


@pytest.mark.parametrize('direction', DIRECTIONS)
@pytest.mark.parametrize('action', ACTIONS)
def test_each_action_in_each_direction(env, action, direction):
    st, dlp = env
    # the rule covers only this direction: the two others must pass untouched
    dlp.reconfigure('[rule under-test]\ndirection = %s\ndetectors = tw_national_id\n'
                    'action = %s\nsubject_prefix = [個資]\n' % (direction, action))
    marker = 'dlp-%s-%s-%d' % (direction, action, time.time_ns())
    before = len(incidents(dlp))
    res, rcpt, sender = send_direction(st, direction, marker, ID_TEXT)
    new = incidents(dlp)[before:]

    if action == 'reject':
        assert not res.ok and res.data[0] == 550, res.describe()
        assert 'personal data' in res.data[1] and 'tw_national_id' in res.data[1]
        assert VALID_ID not in res.data[1]
        assert find_delivered(st, rcpt, marker, timeout=3) is None
    else:
        assert res.ok, res.describe()
    assert len(new) == 1, new
    assert new[0]['action'] == action
    assert new[0]['recipients'][0]['direction'] == direction
    assert new[0]['findings'][0]['detector'] == 'tw_national_id'
    assert new[0]['findings'][0]['samples'] == ['A12*****89']
    assert VALID_ID not in json.dumps(new[0])

    if action == 'quarantine':
        qid = res.queue_id
        assert find_delivered(st, rcpt, marker, timeout=3) is None
        r = mailkeep(dlp, 'quarantine', 'list')
        assert r.returncode == 0, r.stderr
        assert qid in r.stdout and 'rule under-test' in r.stdout and 'tw_national_id' in r.stdout
        r = mailkeep(dlp, 'quarantine', 'release', qid)
        assert r.returncode == 0 and 'released' in r.stdout, r.stderr
        raw = find_delivered(st, rcpt, marker)
        assert raw is not None, 'released message not delivered'
        assert b'X-Mailkeep-Quarantine:' in raw
        assert qid not in mailkeep(dlp, 'quarantine', 'list').stdout
    elif action != 'reject':
        raw = find_delivered(st, rcpt, marker)
        assert raw is not None
        tagged = b'X-Mailkeep-DLP:' in raw
        assert tagged == (action in ('tag', 'warn')), raw[:600]
        assert subject_of(raw).startswith('[個資]') == (action in ('tag', 'warn'))
        if action == 'warn':
            notice = find_delivered(st, sender, 'Personal data in your message')
            assert notice is not None, 'no notice to the sender'
            assert b'tw_national_id x1 (high)' in notice
            assert VALID_ID.encode() not in notice

    # the same content in the other directions is not this rule's business
    for other in DIRECTIONS:
        if other == direction:
            continue
        before = len(incidents(dlp))
        res, rcpt, _ = send_direction(st, other, marker + '-' + other, ID_TEXT)
        assert res.ok, res.describe()
        assert len(incidents(dlp)) == before
        assert find_delivered(st, rcpt, marker + '-' + other) is not None


def test_attachment_and_big5_body_are_scanned(env):
    st, dlp = env
    dlp.reconfigure('[rule ids-out]\ndirection = outbound\ndetectors = tw_national_id\n'
                    'action = reject\n')
    res, _, _ = send_direction(st, 'outbound', 'salary', 'see attachment',
                               [('hr.docx', 'application/vnd.openxmlformats-officedocument.'
                                 'wordprocessingml.document', docx(ID_TEXT))])
    assert res.data[0] == 550, res.describe()
    assert 'in attachment "hr.docx"' in res.data[1]
    # a Big5 body, declared as such
    msg = EmailMessage()
    msg['From'] = 'alice@example.com'
    msg['To'] = PARTNER
    msg['Subject'] = 'big5'
    msg.set_content(ID_TEXT, charset='big5')
    res = st.send('alice@example.com', [PARTNER], data=msg.as_bytes(),
                  auth=('alice@example.com', 'mailkeep'))
    assert res.data[0] == 550 and 'in body' in res.data[1], res.describe()


def test_clean_mail_passes_untouched_without_incident(env):
    st, dlp = env
    dlp.reconfigure('[rule ids]\ndetectors = tw_national_id, payment_card\naction = reject\n')
    before = len(incidents(dlp))
    res, rcpt, _ = send_direction(st, 'internal', 'clean-mail', '會議改到週三下午 3 點，訂單 1234567890。')
    assert res.ok, res.describe()
    raw = find_delivered(st, rcpt, 'clean-mail')
    assert raw and b'X-Mailkeep-DLP' not in raw
    assert len(incidents(dlp)) == before


def test_forged_dlp_headers_are_removed(env):
    st, dlp = env
    dlp.reconfigure('[rule ids]\ndetectors = tw_national_id\naction = log\n')
    data = message(OUTSIDER, ['carol@example.com'], 'forged-dlp', 'hello')
    data = b'X-Mailkeep-DLP: action=pass\r\nX-Mailkeep-Quarantine: none\r\n' + data
    res = st.send(OUTSIDER, ['carol@example.com'], data=data,
                  xclient={'ADDR': '203.0.113.81', 'NAME': '[UNAVAILABLE]'})
    assert res.ok, res.describe()
    raw = find_delivered(st, 'carol@example.com', 'forged-dlp')
    assert b'X-Mailkeep-DLP' not in raw and b'X-Mailkeep-Quarantine' not in raw


def test_local_submission_is_scanned(env):
    st, dlp = env
    dlp.reconfigure('[rule ids-internal]\ndirection = internal\ndetectors = tw_national_id\n'
                    'action = tag\n')
    data = message('alice@example.com', ['carol@example.com'], 'local-submit', ID_TEXT)
    r = st.postfix.sendmail('alice@example.com', ['carol@example.com'], data)
    assert r.returncode == 0, r.stderr
    raw = find_delivered(st, 'carol@example.com', 'local-submit')
    assert raw is not None and b'X-Mailkeep-DLP: action=tag' in raw


def test_dlp_scan_command(env):
    _, dlp = env
    dlp.reconfigure('[rule ids-out]\ndirection = outbound\ndetectors = tw_national_id:high\n'
                    'action = quarantine\n')
    path = os.path.join(dlp.dir, 'note.txt')
    with open(path, 'w') as f:
        f.write(ID_TEXT + '\n手機 0912-345-678\n')
    r = mailkeep(dlp, 'dlp', 'scan', '-d', 'outbound', path)
    assert r.returncode == 1, r.stderr           # 1: something found
    assert 'tw_national_id: high 1' in r.stdout
    assert 'sample: A12*****89' in r.stdout
    assert 'tw_phone:' in r.stdout
    assert 'outbound mail: quarantine (rule ids-out)' in r.stdout
    assert VALID_ID not in r.stdout
    r = mailkeep(dlp, 'dlp', 'scan', '/nonexistent/file')
    assert r.returncode == 66 and 'cannot open' in r.stderr


def test_killed_milter_tempfails_and_nothing_is_lost(env):
    st, dlp = env
    dlp.reconfigure('[rule ids]\ndetectors = tw_national_id\naction = log\n')
    dlp.daemon.kill9()
    res, rcpt, _ = send_direction(st, 'internal', 'while-dlp-down', 'hello')
    assert not res.ok
    assert any(400 <= code < 500 for _stage, code, _t in res.stages), res.describe()
    dlp.start()
    res, rcpt, _ = send_direction(st, 'internal', 'while-dlp-down', 'hello')   # the client retries
    assert res.ok, res.describe()
    assert find_delivered(st, rcpt, 'while-dlp-down') is not None


def test_quarantine_show_delete_and_unknown_ids(env):
    st, dlp = env
    dlp.reconfigure('[rule hold-all-ids]\ndetectors = tw_national_id\naction = quarantine\n')
    res, rcpt, _ = send_direction(st, 'internal', 'to-be-deleted', ID_TEXT)
    assert res.ok, res.describe()
    qid = res.queue_id
    r = mailkeep(dlp, 'quarantine', 'show', qid)
    assert r.returncode == 0, r.stderr
    assert 'held because: mailkeep-dlp: rule hold-all-ids: tw_national_id x1 (high) in body' in r.stdout
    assert 'Subject: to-be-deleted' in r.stdout
    r = mailkeep(dlp, 'quarantine', 'delete', qid)
    assert r.returncode == 0 and 'deleted' in r.stdout, r.stderr
    assert qid not in mailkeep(dlp, 'quarantine', 'list').stdout
    assert find_delivered(st, rcpt, 'to-be-deleted', timeout=3) is None
    for bad in (qid, 'NOSUCHID', '../etc'):
        r = mailkeep(dlp, 'quarantine', 'release', bad)
        assert r.returncode == 1 and 'no such message in the quarantine' in r.stderr


def test_dlp_scan_reads_standard_input(env):
    _, dlp = env
    r = subprocess.run([MAILKEEP, '-c', dlp.config, 'dlp', 'scan', '-f', '-'],
                       input='信用卡號 4111 1111 1111 1111', capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stderr
    assert 'payment_card: high 1' in r.stdout
