"""mailkeep_usage + mailkeep-auditd against a real Dovecot: the usage
database follows deliveries, copies, moves, expunges, mailbox deletes and
purges exactly as doveadm counts; `mailkeep usage report` filters by
inactivity, size and domain; `mailkeep usage purge` removes what it is
told to, dry run first, and audits it."""
import json
import os

import pytest

from auditenv import message, running_stack

ALICE = 'alice@example.com'
BOB = 'bob@example.com'
WEI = 'wei@example.org'
MEI = 'mei@example.org'
JUN = 'jun@example.org'


@pytest.fixture(scope='module')
def st():
    with running_stack('mk-usage-') as s:
        yield s


def assert_usage_matches(st, user):
    """Every mailbox the database has for user, as doveadm counts it;
    mailboxes the database lacks must be empty ones no one changed."""
    have = st.usage(user)
    want = st.status(user)
    for name, (guid, messages, vsize) in have.items():
        assert name in want, '%s: %s in the database, not in Dovecot' % (user, name)
        assert (guid, messages, vsize) == want[name], (user, name, have[name], want[name])
    for name, (guid, messages, vsize) in want.items():
        if name not in have:
            assert messages == 0, '%s: %s (%d messages) missing' % (user, name, messages)
    return have


def report(st, *args):
    out = st.audit.mailkeep('usage', 'report', '-j', *args, check=True).stdout
    return {r['user']: r for r in (json.loads(line) for line in out.splitlines())}


def test_deliveries_copies_moves_and_expunges_keep_usage_exact(st):
    for i in range(5):
        st.deliver(ALICE, message('usage %d' % i, size=2000 * (i + 1)))
    have = assert_usage_matches(st, ALICE)
    assert have['INBOX'][1] == 5
    c = st.imap(ALICE)
    c.create('Keep')
    c.select('INBOX')
    c.uid('COPY', '1:2', 'Keep')
    c.uid('MOVE', '3', 'Keep')
    have = assert_usage_matches(st, ALICE)
    assert (have['INBOX'][1], have['Keep'][1]) == (4, 3)
    c.uid('STORE', '1', '+FLAGS', '(\\Deleted)')
    c.expunge()
    c.append('Keep', None, None, message('appended', size=3000))
    c.logout()
    have = assert_usage_matches(st, ALICE)
    assert (have['INBOX'][1], have['Keep'][1]) == (3, 4)
    # a rename keeps the figures under the new name; a delete drops them
    c = st.imap(ALICE)
    c.rename('Keep', 'Kept')
    have = assert_usage_matches(st, ALICE)
    assert 'Keep' not in have and have['Kept'][1] == 4
    c.delete('Kept')
    c.logout()
    have = assert_usage_matches(st, ALICE)
    assert 'Kept' not in have


def test_pop3_deletes_and_doveadm_expunges_are_counted(st):
    for i in range(3):
        st.deliver(WEI, message('pop %d' % i, size=4000))
    p = st.pop3(WEI)
    p.dele(1)
    p.quit()
    assert assert_usage_matches(st, WEI)['INBOX'][1] == 2
    st.doveadm('expunge', '-u', WEI, 'mailbox', 'INBOX', 'subject', 'pop 1')
    assert assert_usage_matches(st, WEI)['INBOX'][1] == 1


def test_last_login_per_protocol(st):
    st.imap(BOB).logout()
    p = st.pop3(BOB)
    p.quit()
    st.audit.sync()
    rows = dict(st.audit.query('SELECT service, time FROM last_login WHERE user = ?', BOB))
    assert set(rows) >= {'imap', 'pop3'}
    r = report(st, '-u', BOB)[BOB]
    assert r['imap'] > 0 and r['pop3'] > 0 and r['last_login'] == max(r['imap'], r['pop3'])


def test_scan_fills_accounts_never_seen_and_report_filters(st):
    # mei never logged in; one message came by LMTP, and a big one was put
    # into her Maildir behind Dovecot's back (a migration), which only a
    # scan can know of
    st.deliver(MEI, message('before', size=1000))
    assert st.usage(MEI)['INBOX'][1] == 1
    new = os.path.join(st.dovecot.mail_dir(MEI), 'new')
    path = os.path.join(new, '1700000000.M1P1.migrated')
    with open(path, 'wb') as f:
        f.write(message('migrated', size=60000))
    os.chown(path, st.dovecot.mail_uid, st.dovecot.mail_gid)
    st.audit.mailkeep('usage', 'scan', '-A', check=True)
    assert_usage_matches(st, MEI)
    everyone = report(st)
    assert MEI in everyone and everyone[MEI]['last_login'] == 0
    assert everyone[MEI]['messages'] == 2
    # jun has never been used at all: no mailbox yet, listed all the same
    assert (everyone[JUN]['messages'], everyone[JUN]['mailboxes'],
            everyone[JUN]['last_login']) == (0, 0, 0)
    assert JUN in report(st, '-i', '1')
    # inactive for a day: those who never logged in, not bob
    inactive = report(st, '-i', '1')
    assert MEI in inactive and BOB not in inactive
    # over 50 KB: only mei's one big message makes it
    big = report(st, '-o', '50K', '-d', 'example.org')
    assert set(big) == {MEI}
    assert set(report(st, '-d', 'example.org')) >= {MEI, WEI}
    assert not [u for u in report(st, '-d', 'example.org') if not u.endswith('@example.org')]
    # the plain report sorts by size, largest first
    out = st.audit.mailkeep('usage', 'report', '-s', 'size', check=True).stdout.splitlines()
    assert out[0].startswith('ACCOUNT')
    sizes = [everyone[line.split()[0]]['vsize'] for line in out[1:]]
    assert sizes == sorted(sizes, reverse=True)


def test_purge_dry_run_then_purge_by_size_audited(st):
    user = 'grace@example.com'
    for i, size in enumerate((1000, 40000, 2000, 80000)):
        st.deliver(user, message('purge %d' % i, size=size))
    before = assert_usage_matches(st, user)['INBOX'][1]
    r = st.audit.mailkeep('usage', 'purge', '-u', user, '-l', '30K', '-n', check=True,
                          env={'SUDO_USER': 'hsu.admin'})
    assert 'would remove 2 messages' in r.stdout, r.stdout
    # even a dry run's search through doveadm is on record, with its admin
    st.audit.sync()
    searches = [x for x in st.audit.records(op='search', user=user)
                if x.get('service') == 'doveadm']
    assert searches and all(x['admin'] == 'hsu.admin' for x in searches)
    assert assert_usage_matches(st, user)['INBOX'][1] == before
    r = st.audit.mailkeep('usage', 'purge', '-u', user, '-l', '30K', check=True,
                          env={'SUDO_USER': 'hsu.admin'})
    assert 'removed 2 messages' in r.stdout, r.stdout
    assert assert_usage_matches(st, user)['INBOX'][1] == before - 2
    st.audit.sync()
    purge = st.audit.records(op='purge', user=user)
    assert len(purge) == 1
    assert purge[0]['admin'] == 'hsu.admin' and purge[0]['messages'] == 2
    assert 'larger' in purge[0]['criteria']
    expunges = [x for x in st.audit.records(op='expunge', user=user)
                if x.get('service') == 'doveadm']
    assert len(expunges) == 2 and all(x['admin'] == 'hsu.admin' for x in expunges)
    assert expunges[0]['seq'] > purge[0]['seq']


def test_purge_of_a_mailbox_an_account_does_not_have(st):
    st.deliver(BOB, message('stays'))
    count = st.status(BOB)['INBOX'][1]
    r = st.audit.mailkeep('usage', 'purge', '-u', BOB, '-m', 'Archive2019', '-a', check=True)
    assert 'no mailbox Archive2019: nothing to remove' in r.stdout, r.stdout
    assert st.status(BOB)['INBOX'][1] == count
    r = st.audit.mailkeep('usage', 'purge', '-u', 'nobody@example.com', '-a')
    assert r.returncode == 75 and 'doveadm search failed' in r.stderr


def test_purge_refuses_without_a_choice_of_mail_or_accounts(st):
    r = st.audit.mailkeep('usage', 'purge', '-u', BOB)
    assert r.returncode == 64 and 'choose mail' in r.stderr
    r = st.audit.mailkeep('usage', 'purge', '-b', '30d')
    assert r.returncode == 64 and 'choose accounts' in r.stderr
    r = st.audit.mailkeep('usage', 'purge', '-u', BOB, '-b', 'soon')
    assert r.returncode == 64


def test_purge_is_refused_when_it_cannot_be_audited(st):
    user = 'frank@example.com'
    st.deliver(user, message('keep me'))
    count = st.status(user)['INBOX'][1]
    st.audit.stop()
    try:
        r = st.audit.mailkeep('usage', 'purge', '-u', user, '-a')
        assert r.returncode == 69, r.stdout + r.stderr
        assert 'could not be audited' in r.stderr
    finally:
        st.audit.start()
    assert st.status(user)['INBOX'][1] == count
