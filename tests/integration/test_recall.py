"""Message recall against real Postfix (mailkeep-recall as its milter),
Dovecot (with the audit plugin that marks what reached a client),
slapd, mailkeep-auditd and an smtp-sink standing for the outside world.

The recipients of one message do what recipients do (read it over IMAP,
fetch it over POP3 and keep the session open, move it, delete it, leave
it) and the recall must do exactly the right thing for each; undo-send
holds mail to the outside and releases it on time, across a restart of
the releaser; only the sender, their domain's administrator or the
organisation's may recall, and every recall is in the audit log."""
import os
import subprocess
import time

import pytest

import mkstack
from recallenv import running_stack

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root (Postfix, Dovecot)')

ALICE = 'alice@example.com'
EXTERNAL = 'partner@external.example'
# alice is in the sales group: 30 s to undo; a user's own option wins
UNDO = 'undo_send_groups = sales:30s\n'


@pytest.fixture(scope='module')
def stack():
    # the mail host's order: the journal, then recall, last (a message one
    # milter holds goes to no later milter)
    with running_stack('mk-recall-', UNDO, journal=True) as s:
        yield s


def recall_records(stack, msgid):
    return stack.wait_records(lambda r: r.get('op') == 'recall'
                              and r.get('message_id') == msgid)


def set_undo(stack, uid, value):
    """Give a directory user an undo_send option (None: remove it)."""
    ldif = 'dn: %s\nchangetype: modify\n' % stack.slapd.user_dn(uid)
    if value is None:
        ldif += 'delete: mailkeepOption\n'
    else:
        ldif += 'replace: mailkeepOption\nmailkeepOption: undo_send=%s\n' % value
    stack.slapd.modify(ldif)
    time.sleep(1.2)             # the milter's directory cache (cache_ttl = 1s)


def test_each_recipient_gets_what_it_did(stack):
    """One message, five local recipients: read over IMAP, fetched over
    POP3 with the session still open, moved to another folder, left
    alone, deleted. Only the moved and the untouched copies go."""
    rcpts = ['bob@example.com', 'carol@example.com', 'dave@example.com', 'erin@example.com',
             'frank@example.com']
    msgid = stack.send(ALICE, rcpts, subject='Quarterly figures')
    for r in rcpts:
        stack.wait_delivered(r, msgid)

    imap = stack.imap('bob@example.com')           # reads it
    imap.select('INBOX')
    typ, data = imap.fetch('1', '(BODY[])')
    assert typ == 'OK' and b'may be recalled' in data[0][1]
    imap.logout()

    pop = stack.pop3('carol@example.com')          # fetches it, stays connected
    assert b'may be recalled' in b'\n'.join(pop.retr(1)[1])

    imap = stack.imap('dave@example.com')          # files it unread
    imap.create('Projects')
    imap.select('INBOX')
    typ, _ = imap.uid('MOVE', '1', 'Projects')
    assert typ == 'OK'
    imap.logout()

    imap = stack.imap('frank@example.com')         # deletes it unread
    imap.select('INBOX')
    imap.store('1', '+FLAGS', '\\Deleted')
    imap.expunge()
    imap.logout()

    try:
        outcome, r = stack.recall_json(msgid, ALICE)
        assert r.returncode == 0, r.stderr
        assert outcome['bob@example.com'][0] == 'read'
        assert ('reached a mail client at %s' % time.strftime('%Y-%m-%d')
                in outcome['bob@example.com'][1])
        assert outcome['carol@example.com'][0] == 'read'
        assert outcome['dave@example.com'] == ('recalled', 'recalled from Projects')
        assert outcome['erin@example.com'] == ('recalled', 'recalled from INBOX')
        assert outcome['frank@example.com'][0] == 'gone'
        # the POP3 session is still open, and its message still there
        assert pop.stat()[0] == 1
    finally:
        pop.quit()

    assert stack.find('bob@example.com', msgid)
    assert stack.find('carol@example.com', msgid)
    assert stack.find('dave@example.com', msgid) == []
    assert stack.find('erin@example.com', msgid) == []

    # every outcome is in the audit log, with who recalled
    recs = recall_records(stack, msgid)
    by_user = {r['user']: r for r in recs if r.get('result') != 'started'}
    assert {u: by_user[u]['result'] for u in rcpts} == {
        'bob@example.com': 'read', 'carol@example.com': 'read',
        'dave@example.com': 'recalled', 'erin@example.com': 'recalled',
        'frank@example.com': 'gone'}
    assert all(r['by'] == ALICE and r['role'] == 'user' for r in recs)
    assert [r for r in recs if r['result'] == 'started' and r['user'] == ALICE]
    # the expunges themselves are recorded by the plugin, as alice's doing
    expunges = stack.wait_records(lambda r: r.get('op') == 'expunge'
                                  and r.get('message_id') == msgid)
    assert {r['user'] for r in expunges} >= {'dave@example.com', 'erin@example.com'}
    assert all(r.get('admin') == ALICE for r in expunges
               if r['user'] in ('dave@example.com', 'erin@example.com'))

    # the list shows the outcome; a second recall changes nothing
    r = stack.mailkeep('recall', 'list', user=ALICE, check=True)
    assert msgid in r.stdout and 'Quarterly figures' in r.stdout
    outcome, r = stack.recall_json(msgid, ALICE)
    assert r.returncode == 0
    assert outcome['erin@example.com'][0] == 'gone'
    assert outcome['bob@example.com'][0] == 'read'


def test_dry_run_changes_nothing(stack):
    msgid = stack.send(ALICE, ['erin@example.com'])
    stack.wait_delivered('erin@example.com', msgid)
    outcome, r = stack.recall_json(msgid, ALICE, '-n')
    assert r.returncode == 0, r.stderr
    assert outcome['erin@example.com'] == ('would-recall', 'would be recalled from INBOX')
    assert len(stack.find('erin@example.com', msgid)) == 1
    assert not [rec for rec in recall_records(stack, msgid) if rec['result'] != 'refused']


def test_notice_left_in_place(stack):
    msgid = stack.send(ALICE, ['erin@example.com'], subject='=?UTF-8?B?5YWs5Y+46LKh5aCx?=')
    stack.wait_delivered('erin@example.com', msgid)
    outcome, r = stack.recall_json(msgid, ALICE, '-N')
    assert outcome['erin@example.com'][0] == 'recalled', r.stderr
    rows = stack.dovecot.doveadm('fetch', '-u', 'erin@example.com', 'text', 'mailbox', 'INBOX',
                                 'header', 'subject', 'Recalled').stdout
    assert 'was recalled by its sender' in rows and '公司財報' in rows
    assert ALICE in rows


def test_message_still_in_queue_is_removed(stack):
    """A local delivery that has not happened yet is recalled from the queue."""
    stack.postfix.set_params(defer_transports='lmtp')
    try:
        msgid = stack.send(ALICE, ['erin@example.com'])
        qid = stack.records(msgid)[0][2]
        assert qid in stack.queue()
        outcome, r = stack.recall_json(msgid, ALICE)
        assert r.returncode == 0, r.stderr
        assert outcome['erin@example.com'] == (
            'recalled', 'recalled: removed from the queue (not yet delivered)')
        assert qid not in stack.queue()
    finally:
        stack.postfix.set_params(defer_transports='')
    stack.postfix.flush()
    time.sleep(1)
    assert stack.find('erin@example.com', msgid) == []


def test_undo_send_recalled_from_the_queue(stack):
    """alice's mail to the outside waits 30 s: a recall then reaches every
    recipient, local ones included, and nothing leaves."""
    before = stack.sink.received_count()
    msgid = stack.send(ALICE, [EXTERNAL, 'erin@example.com'], subject='oops')
    (_, _, qid, hold, _), = stack.records(msgid)
    assert hold == 'held'
    assert stack.queue()[qid][0] == 'hold'
    outcome, r = stack.recall_json(msgid, ALICE)
    assert r.returncode == 0, r.stderr
    assert outcome == {
        EXTERNAL: ('recalled', 'recalled: removed from the queue (held for undo-send)'),
        'erin@example.com': ('recalled',
                             'recalled: removed from the queue (held for undo-send)')}
    assert qid not in stack.queue()
    assert stack.records(msgid)[0][3] == 'recalled'
    # the compliance archive has it all the same
    journaled = [env for _, env, _ in stack.journal.entries() if env.get('queue-id') == qid]
    assert len(journaled) == 1
    time.sleep(1.5)                 # the releaser runs every second: nothing to release
    assert stack.sink.received_count() == before
    assert stack.find('erin@example.com', msgid) == []


def test_undo_send_released_on_time_then_sent(stack):
    set_undo(stack, 'bob', '2s')
    try:
        before = stack.sink.received_count()
        msgid = stack.send('bob@example.com', [EXTERNAL])
        (_, _, qid, hold, _), = stack.records(msgid)
        assert hold == 'held' and stack.queue()[qid][0] == 'hold'
        stack.sink.wait_count(before + 1, timeout=20)
        assert stack.records(msgid)[0][3] == 'released'
        assert 'undo-send over: released' in stack.releaser.stderr()
        outcome, r = stack.recall_json(msgid, 'bob@example.com')
        assert r.returncode == 0, r.stderr
        assert outcome == {EXTERNAL: ('sent', 'not recalled: external, already sent')}
    finally:
        set_undo(stack, 'bob', None)


def test_undo_send_survives_a_releaser_restart(stack):
    """Held mail stays held (not lost) while the releaser is down, and goes
    out as soon as it is back."""
    set_undo(stack, 'bob', '1s')
    stack.releaser.stop()
    try:
        before = stack.sink.received_count()
        msgid = stack.send('bob@example.com', [EXTERNAL])
        qid = stack.records(msgid)[0][2]
        time.sleep(3)
        assert stack.queue()[qid][0] == 'hold'
        assert stack.sink.received_count() == before
    finally:
        stack.releaser.start()
        set_undo(stack, 'bob', None)
    stack.sink.wait_count(before + 1, timeout=20)
    assert stack.records(msgid)[0][3] == 'released'


def test_undo_send_leaves_a_quarantine_alone(stack):
    """A message that mailkeep-dlp or mailkeep-av also holds is not released
    when the undo window ends."""
    set_undo(stack, 'bob', '1s')
    try:
        before = stack.sink.received_count()
        msgid = stack.send('bob@example.com', [EXTERNAL],
                           extra_headers='X-Mailkeep-Quarantine: dlp: tw_national_id x3\r\n')
        qid = stack.records(msgid)[0][2]
        deadline = time.time() + 15
        while stack.records(msgid)[0][3] == 'held' and time.time() < deadline:
            time.sleep(0.2)
        assert stack.records(msgid)[0][3] == 'quarantined'
        assert stack.queue()[qid][0] == 'hold'
        assert stack.sink.received_count() == before
        stack.postfix.postsuper('-d', qid)
    finally:
        set_undo(stack, 'bob', None)


def test_only_the_sender_or_their_administrators_may_recall(stack):
    msgid = stack.send(ALICE, ['erin@example.com'])
    stack.wait_delivered('erin@example.com', msgid)

    # another user: the message is not theirs, and they are not told it exists
    r = stack.mailkeep('recall', msgid, user='bob@example.com')
    assert r.returncode == 65 and 'no message of yours' in r.stderr
    # another domain's administrator
    r = stack.mailkeep('recall', msgid, user='jun@example.org')
    assert r.returncode == 77 and 'no message of your domain' in r.stderr
    r = stack.mailkeep('recall', 'list', '-j', user='jun@example.org', check=True)
    assert msgid not in r.stdout
    # a wrong password
    r = stack.mailkeep('recall', msgid, user=ALICE, password='wrong')
    assert r.returncode == 77 and 'authentication failed' in r.stderr
    assert len(stack.find('erin@example.com', msgid)) == 1

    refused = [rec for rec in recall_records(stack, msgid) if rec['result'] == 'refused']
    assert {(rec['by'], rec['role']) for rec in refused} == {
        ('bob@example.com', 'user'), ('jun@example.org', 'domain-admin')}

    # the organisation's administrator may
    outcome, r = stack.recall_json(msgid, 'admin@example.com')
    assert outcome['erin@example.com'][0] == 'recalled', r.stderr

    # a domain administrator, within the domain
    msgid = stack.send('wei@example.org', ['mei@example.org'])
    stack.wait_delivered('mei@example.org', msgid)
    r = stack.mailkeep('recall', 'list', '-j', user='jun@example.org', check=True)
    assert msgid in r.stdout and 'alice@' not in r.stdout
    outcome, r = stack.recall_json(msgid, 'jun@example.org')
    assert outcome == {'mei@example.org': ('recalled', 'recalled from INBOX')}, r.stderr


def test_forwarded_message_belongs_to_who_forwarded_it(stack):
    """bob passes alice's message on to carol with its Message-ID: alice's
    recall reaches bob only; carol's copy is bob's to recall."""
    msgid = stack.send(ALICE, ['bob@example.com'], subject='to pass on')
    stack.wait_delivered('bob@example.com', msgid)
    stack.send('bob@example.com', ['carol@example.com'], msgid=msgid, subject='to pass on')
    stack.wait_delivered('carol@example.com', msgid)

    outcome, r = stack.recall_json(msgid, ALICE)
    assert outcome == {'bob@example.com': ('recalled', 'recalled from INBOX')}, r.stderr
    assert len(stack.find('carol@example.com', msgid)) == 1
    outcome, r = stack.recall_json(msgid, 'bob@example.com')
    assert outcome == {'carol@example.com': ('recalled', 'recalled from INBOX')}, r.stderr


@pytest.mark.parametrize('header', ['', 'Message-ID: not an identifier\r\n'])
def test_message_without_id_gets_one(stack, header):
    """Mail from outside without a (readable) Message-ID gets one, recorded,
    and only one, so that it can be found again."""
    data = ('From: <someone@outside.example>\r\nTo: <erin@example.com>\r\n%s'
            'Subject: no id\r\n\r\nbody\r\n' % header)
    # Postfix adds a Message-ID itself for clients it rewrites headers for
    # (the milter then sees and records that one); not for this client
    stack.postfix.set_params(local_header_rewrite_clients='')
    try:
        r = mkstack.send(mkstack.LOOPBACK, stack.postfix.smtp_port, 'someone@outside.example',
                         ['erin@example.com'], data=data, xclient={'ADDR': '198.51.100.7'})
    finally:
        stack.postfix.set_params(local_header_rewrite_clients='permit_inet_interfaces')
    assert r.data[0] == 250, r.stages
    import sqlite3
    db = sqlite3.connect('file:%s?mode=ro' % stack.recall.db, uri=True)
    msgid, owner, added = db.execute('SELECT message_id, owner, added_id FROM messages'
                                     ' ORDER BY id DESC LIMIT 1').fetchone()
    db.close()
    assert added == 1 and owner is None and msgid.endswith('@recall.example>'), (msgid, added)
    stack.wait_delivered('erin@example.com', msgid)
    raw = stack.dovecot.doveadm('fetch', '-u', 'erin@example.com', 'hdr', 'mailbox', 'INBOX',
                                'header', 'message-id', msgid).stdout
    assert raw.lower().count('message-id:') == 1
    # mail from outside has no sender who may recall it: only an administrator
    r = stack.mailkeep('recall', msgid, user='erin@example.com')
    assert r.returncode == 65
    outcome, r = stack.recall_json(msgid)
    assert outcome == {'erin@example.com': ('recalled', 'recalled from INBOX')}, r.stderr


def test_refused_without_the_audit_log(stack):
    msgid = stack.send(ALICE, ['erin@example.com'])
    stack.wait_delivered('erin@example.com', msgid)
    stack.audit.stop()
    try:
        r = stack.mailkeep('recall', msgid, user=ALICE)
    finally:
        stack.audit.start()
    assert r.returncode == 69 and 'could not be audited' in r.stderr
    assert len(stack.find('erin@example.com', msgid)) == 1


def test_usage_errors(stack):
    r = stack.mailkeep('recall')
    assert r.returncode == 64 and 'usage:' in r.stderr
    r = stack.mailkeep('recall', 'not an id')
    assert r.returncode == 64 and 'not a Message-ID' in r.stderr
    r = stack.mailkeep('recall', 'list', '-t', 'soon')
    assert r.returncode == 64 and '-t wants an age' in r.stderr
    r = stack.mailkeep('recall', 'release', '-a', ALICE)
    assert r.returncode == 64


def test_database_trouble_tempfails(stack, tmp_path):
    """A database that cannot be written (a full file system) makes Postfix
    try again later: no message is accepted unrecorded."""
    mnt = tmp_path / 'small'
    mnt.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mnt)], check=True)
    try:
        stack.recall.stop()
        db = stack.recall.db
        stack.recall.db = str(mnt / 'recall.sqlite')
        stack.recall.write_config()
        stack.recall.start()
        msgid = stack.send(ALICE, ['erin@example.com'])     # the database works
        with open(mnt / 'filler', 'wb') as f:
            try:
                while True:
                    f.write(b'\0' * 65536)
                    f.flush()
            except OSError:
                pass
        data = ('From: <%s>\r\nTo: <erin@example.com>\r\nSubject: full\r\n'
                'Message-ID: <full-%d@example.com>\r\n\r\n%s\r\n'
                % (ALICE, time.time_ns(), 'x' * 20000))
        rejected = None
        for _ in range(20):         # until the WAL has no room left
            r = mkstack.send(mkstack.LOOPBACK, stack.postfix.smtp_port, ALICE,
                             ['erin@example.com'], data=data,
                             auth=(ALICE, mkstack.DEMO_PASSWORD))
            if r.data[0] != 250:
                rejected = r.data
                break
        assert rejected is not None and rejected[0] == 451, rejected
        assert 'tempfail' in stack.recall.log()
        os.unlink(mnt / 'filler')
        msgid = stack.send(ALICE, ['erin@example.com'])
        assert stack.records(msgid)
    finally:
        stack.recall.stop()
        stack.recall.db = db
        stack.recall.write_config()
        stack.recall.start()
        subprocess.run(['umount', '-l', str(mnt)])
