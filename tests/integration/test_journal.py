"""mailkeep-journal through the real Postfix: every accepted message is in
the spool, complete and with its envelope, before Postfix accepts it; when
it cannot be written, Postfix tempfails."""
import os
import time

import pytest

import mkstack
from archiveenv import JournalMilter


@pytest.fixture(scope='module')
def env():
    st = mkstack.Stack()
    jr = None
    try:
        st.slapd.start()
        jr = JournalMilter(st.workdir, st.slapd).start()
        st.start(smtpd_milters=jr.socket, non_smtpd_milters=jr.socket)
        yield st, jr
    finally:
        if jr:
            jr.stop()
        st.stop()


def find(jr, marker):
    for msg, env, rcpts in jr.entries():
        if marker.encode() in msg:
            return msg, env, rcpts
    return None


def message(subject, body='hello\r\n', extra=''):
    return ('From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\n'
            'Subject: %s\r\nDate: Mon, 23 Nov 2026 08:00:00 +0800\r\n'
            'Message-ID: <%s@example.com>\r\n%s\r\n%s' % (subject, subject, extra, body)).encode()


def test_inbound_message_is_spooled_exactly_with_its_envelope_and_bcc(env):
    st, jr = env
    data = message('jr-inbound', 'line one\r\nline two with  two spaces\r\n',
                   'X-Odd:no-space-after-colon\r\nX-Folded: first\r\n\tsecond\r\n')
    res = st.send('stranger@outside.example', ['bob@example.com', 'carol@example.com'],
                  data=data, xclient={'ADDR': '203.0.113.7', 'NAME': 'mx.outside.example'})
    assert res.ok, res.describe()
    # acknowledged means spooled: no waiting needed
    found = find(jr, 'jr-inbound')
    assert found, jr.log()
    msg, envelope, rcpts = found
    # the message byte for byte as the client sent it (Postfix does not
    # show milters its own Received: header)
    assert msg == data, msg[:400]
    assert b'X-Odd:no-space-after-colon\r\n' in msg
    assert envelope['sender'] == 'stranger@outside.example'
    assert envelope['client'] == '203.0.113.7'
    assert envelope['queue-id'] == res.queue_id
    assert envelope['source'] == 'journal'
    assert abs(int(envelope['time']) - time.time()) < 300
    # carol is not in To: a BCC recipient, kept in the envelope all the same
    assert rcpts == [('bob@example.com', 'inbound'), ('carol@example.com', 'inbound')]


def test_outbound_and_internal_directions_and_login(env):
    st, jr = env
    res = st.send('alice@example.com', ['bob@example.com', 'partner@partner.example'],
                  data=message('jr-outbound'), auth=('alice@example.com', 'mailkeep'))
    assert res.ok, res.describe()
    _msg, envelope, rcpts = find(jr, 'jr-outbound')
    assert envelope['login'] == 'alice@example.com'
    assert rcpts == [('bob@example.com', 'internal'), ('partner@partner.example', 'outbound')]


def test_local_submission_is_captured(env):
    st, jr = env
    r = st.postfix.sendmail('alice@example.com', ['bob@example.com'], message('jr-local'))
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not find(jr, 'jr-local'):
        time.sleep(0.2)
    found = find(jr, 'jr-local')
    assert found, jr.log()
    # Postfix presents local submission as a connection from localhost
    assert found[1]['client'] == '127.0.0.1', found[1]
    assert found[1]['client-name'] == 'localhost', found[1]
    assert found[2] == [('bob@example.com', 'internal')]


def test_unwritable_spool_tempfails_and_nothing_is_lost(env):
    st, jr = env
    new = os.path.join(jr.spool, 'tmp')
    os.rename(new, new + '.away')               # the spool's tmp/ is gone: no file can be made
    try:
        res = st.send('stranger@outside.example', ['bob@example.com'],
                      data=message('jr-cannot-write'), xclient={'ADDR': '203.0.113.8'})
        assert not res.ok and res.data[0] == 451, res.describe()
        assert 'Message could not be archived' in res.data[1]
        assert 'tempfail:' in jr.log()
    finally:
        os.rename(new + '.away', new)
    assert not find(jr, 'jr-cannot-write')
    # on_failure = accept lets mail through unarchived, and says so loudly
    jr.write_config('on_failure = accept\n')
    jr.reload_and_wait()
    os.rename(new, new + '.away')
    try:
        res = st.send('stranger@outside.example', ['bob@example.com'],
                      data=message('jr-accept-anyway'), xclient={'ADDR': '203.0.113.8'})
        assert res.ok, res.describe()
        assert 'accepted NOT ARCHIVED (on_failure = accept)' in jr.log()
    finally:
        os.rename(new + '.away', new)
        jr.write_config()
        jr.reload_and_wait()


def test_low_disk_space_tempfails_at_mail_from(env):
    st, jr = env
    jr.write_config('min_free = 1000000G\n')
    jr.reload_and_wait()
    try:
        res = st.send('stranger@outside.example', ['bob@example.com'],
                      data=message('jr-disk-full'), xclient={'ADDR': '203.0.113.9'})
        assert not res.ok and res.mail[0] == 452, res.describe()
        assert "Insufficient system storage" in res.mail[1]
        assert 'less than min_free left' in jr.log()
    finally:
        jr.write_config()
        jr.reload_and_wait()


def test_killed_journal_tempfails(env):
    st, jr = env
    jr.daemon.kill9()
    res = st.send('stranger@outside.example', ['bob@example.com'],
                  data=message('jr-down'), xclient={'ADDR': '203.0.113.10'})
    assert not res.ok and any(400 <= c < 500 for _s, c, _t in res.stages), res.describe()
    jr.start()
    res = st.send('stranger@outside.example', ['bob@example.com'],
                  data=message('jr-down'), xclient={'ADDR': '203.0.113.10'})
    assert res.ok and find(jr, 'jr-down')
