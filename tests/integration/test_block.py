"""mailkeep-block through the real Postfix, with Dovecot delivering and
slapd as the directory. Each test uses its own client address (XCLIENT),
so rate counters and bans of one test do not touch another."""
import email
import os
import pwd
import signal
import smtplib
import subprocess
import threading
import time

import pytest

import mkstack
from blockenv import BlockMilter, write
from milterenv import MAILKEEP


@pytest.fixture(scope='module')
def env():
    st = mkstack.Stack()
    milter = None
    try:
        st.slapd.start()
        milter = BlockMilter(st.workdir, st.slapd).start()
        st.start(smtpd_milters=milter.socket)
        yield st, milter
    finally:
        if milter:
            milter.stop()
        st.stop()


def send(st, client, mail_from, rcpts, **kw):
    xclient = {'ADDR': client, 'NAME': '[UNAVAILABLE]'}
    if 'login' in kw:
        xclient['LOGIN'] = kw.pop('login')
    return st.send(mail_from, rcpts, xclient=xclient, **kw)


def delivered(st, user, marker, folder='INBOX', timeout=20):
    try:
        st.wait_for_message(user, marker, folder=folder, timeout=timeout)
        return True
    except TimeoutError:
        return False


def absent(st, user, marker, folder='INBOX'):
    """After Postfix has emptied its queue, the marker is in no message."""
    st.postfix.wait_queue_empty(timeout=20)
    return not any(marker.encode() in raw for _uid, raw in st.imap_messages(user, folder))


def first_refusal(res):
    """The first 4xx/5xx reply of a session, as (stage, code, text)."""
    for stage, code, text in res.stages:
        if code >= 400 or code == 0:
            return stage, code, text
    return None


# ------------------------------------------------------------ client lists

def test_bad_client_ipv4_refused_at_connect(env):
    st, milter = env
    res = send(st, '192.0.2.9', 'someone@good.example', ['alice@example.com'],
               subject='bad-client-v4')
    assert not res.ok, res.describe()
    stage, code, text = first_refusal(res)
    # Postfix answers a connect-time refusal with its own greeting text...
    assert stage == 'xclient' and code == 554, res.describe()
    # ...and logs ours, as we do, with the rule that fired
    assert st.postfix.wait_log(r'milter-reject: XCLIENT from unknown\[192\.0\.2\.9\]: '
                               r'554 5\.7\.1 Client address \[192\.0\.2\.9\] is blocked by local policy')
    assert 'reject: CONNECT from [192.0.2.9]: bad_clients (%s:2)' % milter.path('bad-clients') \
        in milter.log()
    assert absent(st, 'alice@example.com', 'bad-client-v4')


def test_delayed_client_reject_tells_the_client_why(env):
    st, milter = env
    milter.write_config(extra_block='delay_client_reject = yes\n')
    before = len(milter.log())
    milter.reload()
    try:
        assert milter.wait_log('SIGUSR1: configuration generation', start=before)
        res = send(st, '192.0.2.10', 'someone@good.example', ['alice@example.com'])
        assert not res.ok
        # Postfix itself holds a HELO refusal until MAIL FROM (smtpd_delay_reject)
        stage, code, text = first_refusal(res)
        assert stage == 'mail' and code == 554, res.describe()
        assert '5.7.1 Client address [192.0.2.10] is blocked by local policy' in text
    finally:
        milter.write_config()
        before = len(milter.log())
        milter.reload()
        assert milter.wait_log('SIGUSR1: configuration generation', start=before)


def test_bad_client_ipv6_refused(env):
    st, milter = env
    res = send(st, 'IPV6:2001:db8:bad:1::25', 'someone@good.example', ['alice@example.com'])
    assert not res.ok
    assert first_refusal(res)[1] == 554, res.describe()
    assert 'reject: CONNECT from [2001:db8:bad:1::25]: bad_clients' in milter.log()


def test_good_clients_ipv4_and_ipv6_delivered_and_readable_over_imap(env):
    st, _ = env
    for client, marker in (('203.0.113.10', 'good-v4'), ('IPV6:2001:db8:600d::1', 'good-v6')):
        res = send(st, client, 'someone@good.example', ['alice@example.com'], subject=marker)
        assert res.ok, res.describe()
        assert delivered(st, 'alice@example.com', marker)


def test_allow_client_overrides_bad_client(env):
    st, _ = env
    res = send(st, '192.0.2.77', 'x@spam.example', ['carol@example.com'], subject='allowed-client')
    assert res.ok, res.describe()          # allow-listed client: sender lists skipped too
    assert delivered(st, 'carol@example.com', 'allowed-client')


# ------------------------------------------------------------ sender lists

def test_bad_sender_domain_and_pattern_refused_at_mail(env):
    st, milter = env
    for sender in ('x@spam.example', 'offer12@shop.example'):
        res = send(st, '203.0.113.20', sender, ['alice@example.com'])
        assert res.mail[0] == 550 and res.mail[1].startswith('5.7.1'), res.describe()
        assert not res.ok
    log = milter.log()
    assert 'reject: MAIL from [203.0.113.20]: bad_senders (%s:1)' % milter.path('bad-senders') in log
    assert 'reject: MAIL from [203.0.113.20]: bad_senders (%s:2)' % milter.path('bad-senders') in log


def test_allow_sender_overrides_bad_sender(env):
    st, _ = env
    res = send(st, '203.0.113.21', 'friend@spam.example', ['alice@example.com'],
               subject='allowed-sender')
    assert res.ok, res.describe()
    assert delivered(st, 'alice@example.com', 'allowed-sender')


def test_authenticated_and_trusted_senders_are_exempt(env):
    st, _ = env
    res = st.send('x@spam.example', ['carol@example.com'], auth=('dave@example.com', 'mailkeep'),
                  subject='exempt-auth')
    assert res.auth[0] == 235 and res.ok, res.describe()
    res = send(st, '10.9.8.7', 'x@spam.example', ['carol@example.com'], subject='exempt-trusted')
    assert res.ok, res.describe()
    assert delivered(st, 'carol@example.com', 'exempt-auth')
    assert delivered(st, 'carol@example.com', 'exempt-trusted')


# ---------------------------------------------------------- personal lists

def test_personal_block_list_refuses_for_that_recipient_only(env):
    st, milter = env
    res = send(st, '203.0.113.30', 'spammer@bad.example', ['alice@example.com', 'carol@example.com'],
               subject='personal-reject')
    assert res.rcpt['alice@example.com'][0] == 550, res.describe()
    assert 'does not accept mail from this sender' in res.rcpt['alice@example.com'][1]
    assert res.rcpt['carol@example.com'][0] == 250
    assert res.ok
    assert delivered(st, 'carol@example.com', 'personal-reject')
    assert absent(st, 'alice@example.com', 'personal-reject')
    assert 'reject: RCPT from [203.0.113.30]: personal_list' in milter.log()


def test_personal_tag_mode_files_into_junk_for_that_recipient_only(env):
    st, _ = env
    res = send(st, '203.0.113.31', 'deals@promo.example', ['bob@example.com', 'carol@example.com'],
               subject='personal-tag')
    assert res.ok and sorted(res.accepted_rcpts) == ['bob@example.com', 'carol@example.com'], \
        res.describe()
    raw = st.wait_for_message('bob@example.com', 'personal-tag', folder='Junk')
    tags = email.message_from_bytes(raw).get_all('X-Mailkeep-Blocked')
    assert tags == ['bob@example.com'], tags       # carol did not block the sender
    assert delivered(st, 'carol@example.com', 'personal-tag')
    assert absent(st, 'bob@example.com', 'personal-tag', folder='INBOX')


def test_personal_allow_list_overrides_personal_block_list(env):
    st, _ = env
    res = send(st, '203.0.113.32', 'news@promo.example', ['bob@example.com'], subject='personal-allow')
    assert res.ok, res.describe()
    assert delivered(st, 'bob@example.com', 'personal-allow')


def test_forged_tag_header_from_outside_is_removed(env):
    st, _ = env
    res = send(st, '203.0.113.33', 'someone@good.example', ['carol@example.com'],
               subject='forged-tag', headers={'X-Mailkeep-Blocked': 'carol@example.com'})
    assert res.ok, res.describe()
    raw = st.wait_for_message('carol@example.com', 'forged-tag')
    assert b'X-Mailkeep-Blocked' not in raw


def test_personal_list_file(env):
    st, milter = env
    write(os.path.join(milter.path('personal'), 'erin@example.com'),
          '# erin blocks a whole domain but one person in it\n@noisy.example\n+boss@noisy.example\n')
    res = send(st, '203.0.113.34', 'x@noisy.example', ['erin@example.com'])
    assert res.rcpt['erin@example.com'][0] == 550, res.describe()
    res = send(st, '203.0.113.34', 'boss@noisy.example', ['erin@example.com'], subject='boss-allowed')
    assert res.ok, res.describe()
    assert delivered(st, 'erin@example.com', 'boss-allowed')


def test_ldap_personal_list_change_takes_effect_without_restart(env):
    st, milter = env
    pid = milter.daemon.pid
    res = send(st, '203.0.113.35', 'pest@annoying.example', ['grace@example.com'])
    assert res.ok, res.describe()
    st.slapd.modify('dn: %s\nchangetype: modify\nadd: mailkeepBlockedSender\n'
                    'mailkeepBlockedSender: @annoying.example\n' % st.slapd.user_dn('grace'))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        res = send(st, '203.0.113.35', 'pest@annoying.example', ['grace@example.com'])
        if res.rcpt.get('grace@example.com', (0,))[0] == 550:
            break
        time.sleep(0.5)
    assert res.rcpt['grace@example.com'][0] == 550, res.describe()
    assert milter.daemon.pid == pid


# ------------------------------------------------- unknown users, attacks

def test_unknown_recipient_refused_5_1_1(env):
    st, _ = env
    res = send(st, '203.0.113.40', 'someone@good.example', ['nosuchuser@example.com',
                                                            'alice@example.com'], subject='unknown-one')
    assert res.rcpt['nosuchuser@example.com'][0] == 550, res.describe()
    assert '5.1.1' in res.rcpt['nosuchuser@example.com'][1]
    assert res.ok
    # a domain we do not host is the MTA's business, not ours
    res = send(st, '203.0.113.40', 'someone@good.example', ['anyone@elsewhere.example'])
    assert res.rcpt['anyone@elsewhere.example'][0] != 550 or '5.1.1' not in \
        res.rcpt['anyone@elsewhere.example'][1]


def test_dictionary_attack_bans_client(env):
    st, milter = env
    res = send(st, '198.51.100.66', 'probe@attacker.example',
               ['guess1@example.com', 'guess2@example.com', 'guess3@example.com',
                'alice@example.com'])
    codes = [res.rcpt.get(r, (None,))[0] for r in ('guess1@example.com', 'guess2@example.com',
                                                   'guess3@example.com')]
    assert codes == [550, 550, 421], res.describe()
    assert res.closed_by_server
    assert 'disconnect: RCPT from [198.51.100.66]: dictionary_limit' in milter.log()
    # a new session from the same address is turned away; another address is not
    res = send(st, '198.51.100.66', 'someone@good.example', ['alice@example.com'])
    assert not res.ok and first_refusal(res)[1] == 421, res.describe()
    res = send(st, '198.51.100.67', 'someone@good.example', ['alice@example.com'],
               subject='after-ban-other-ip')
    assert res.ok, res.describe()


def test_client_rate_limit(env):
    st, milter = env
    results = [send(st, '198.51.100.70', 'bulk@good.example', ['carol@example.com'])
               for _ in range(7)]
    assert [r.ok for r in results] == [True] * 5 + [False] * 2, [r.describe() for r in results]
    assert results[5].mail[0] == 450, results[5].describe()
    assert 'client_rate_limit' in milter.log()


def test_sender_rate_limit_per_login_even_when_exempt(env):
    st, milter = env
    results = [st.send('frank@example.com', ['carol@example.com'],
                       auth=('frank@example.com', 'mailkeep')) for _ in range(4)]
    assert [r.ok for r in results] == [True, True, True, False], [r.describe() for r in results]
    assert results[3].mail[0] == 450
    assert 'sender_rate_limit' in milter.log()


# ---------------------------------------------------------------- reloads

def smtp_session(st, client):
    s = smtplib.SMTP('127.0.0.1', st.smtp_port, timeout=30)
    s.ehlo('client.example')
    code, _ = s.docmd('XCLIENT', 'ADDR=%s NAME=[UNAVAILABLE]' % client)
    assert code == 220
    s.ehlo('client.example')
    return s


def test_list_change_takes_effect_live_without_dropping_a_session(env):
    st, milter = env
    pid = milter.daemon.pid
    open_session = smtp_session(st, '203.0.113.99')
    assert open_session.mail('someone@good.example')[0] == 250
    before = len(milter.log())
    write(milter.path('bad-clients'), open(milter.path('bad-clients')).read() + '203.0.113.99\n')
    assert milter.wait_log('watched file changed: configuration generation', start=before)
    # the session that began under the old lists finishes under them
    assert open_session.rcpt('alice@example.com')[0] == 250
    code, _ = open_session.data(mkstack.build_message('someone@good.example', ['alice@example.com'],
                                                      subject='session-across-reload'))
    assert code == 250
    open_session.quit()
    assert delivered(st, 'alice@example.com', 'session-across-reload')
    # a new one is refused
    res = send(st, '203.0.113.99', 'someone@good.example', ['alice@example.com'])
    assert not res.ok and first_refusal(res)[1] == 554, res.describe()
    assert milter.daemon.pid == pid


def test_broken_list_keeps_the_running_rules(env):
    st, milter = env
    good = open(milter.path('bad-senders')).read()
    before = len(milter.log())
    write(milter.path('bad-senders'), good + 'this is not an entry\n')
    assert milter.wait_log('reload failed', start=before)
    assert 'bad-senders:3: unexpected text' in milter.log()[before:]
    res = send(st, '203.0.113.50', 'x@spam.example', ['alice@example.com'])
    assert res.mail[0] == 550, res.describe()
    write(milter.path('bad-senders'), good)
    assert milter.wait_log('watched file changed', start=before)


def test_sigusr1_rereads_the_configuration(env):
    st, milter = env
    write(milter.path('allow-senders-2'), 'friend@spam.example\noffer99@shop.example\n')
    text = milter.config_text().replace(milter.path('allow-senders') + '\n',
                                        milter.path('allow-senders-2') + '\n')
    write(milter.config, text)
    before = len(milter.log())
    milter.reload()
    assert milter.wait_log('SIGUSR1: configuration generation', start=before)
    res = send(st, '203.0.113.51', 'offer99@shop.example', ['alice@example.com'])
    assert res.ok, res.describe()
    # a broken configuration is refused and the running one stays
    write(milter.config, text + 'no_such_key = 1\n')
    before = len(milter.log())
    milter.reload()
    assert milter.wait_log('reload failed', start=before)
    assert "unknown key 'no_such_key'" in milter.log()[before:]
    res = send(st, '203.0.113.51', 'offer98@shop.example', ['alice@example.com'])
    assert res.mail[0] == 550, res.describe()
    milter.write_config()
    milter.reload()


# ------------------------------------------------------------ the shell

def test_check_flag_reports_a_broken_list_with_file_and_line(env):
    _, milter = env
    broken = milter.path('broken-senders')
    write(broken, 'ok@example.com\n/unclosed(/\n')
    conf = milter.path('broken.conf')
    write(conf, milter.config_text().replace(milter.path('bad-senders') + '\n', broken + '\n'))
    r = subprocess.run([milter.daemon.argv[0], '-t', '-c', conf], capture_output=True, text=True)
    assert r.returncode == 78
    assert '%s:2: bad pattern' % broken in r.stderr
    r = subprocess.run([milter.daemon.argv[0], '-t', '-c', milter.config], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([milter.daemon.argv[0], '-q'], capture_output=True, text=True)
    assert r.returncode == 64 and 'unknown option -q' in r.stderr


def test_mailkeep_directory_reads_ldap(env):
    _, milter = env
    r = subprocess.run([MAILKEEP, '-c', milter.config, 'directory', 'user', 'Alice@Example.com'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'blocked_sender: spammer@bad.example' in r.stdout
    assert 'group: sales' in r.stdout
    assert 'role: user' in r.stdout
    r = subprocess.run([MAILKEEP, '-c', milter.config, 'directory', 'user', 'nobody@example.com'],
                       capture_output=True, text=True)
    assert r.returncode == 1 and 'not found' in r.stdout
    r = subprocess.run([MAILKEEP, '-c', milter.config, 'directory', 'domain', 'example.org'],
                       capture_output=True, text=True)
    assert r.returncode == 0 and 'local' in r.stdout


# ------------------------------------------------------------ failures

def test_killed_milter_makes_postfix_tempfail_and_nothing_is_lost(env):
    """Mail flows from several client threads while the milter is killed
    and restarted. Every message is either accepted or tempfailed (never
    refused for good, never accepted unfiltered); a client retries its
    tempfailed ones after the restart, as an MTA would; in the end every
    message is in the mailbox exactly once."""
    st, milter = env
    n_threads, per_thread = 3, 12
    outcome = {}
    lock = threading.Lock()

    def client(t):
        for i in range(per_thread):
            marker = 'kill-test-%d-%d' % (t, i)
            res = send(st, '10.20.%d.%d' % (t, i + 1), 'load@good.example', ['hsu@example.org'],
                       subject=marker)
            with lock:
                outcome[marker] = res
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    milter.daemon.kill9()
    time.sleep(1.0)
    # one session while it is down: Postfix must tempfail it
    down = send(st, '10.20.99.1', 'load@good.example', ['hsu@example.org'], subject='while-down')
    milter.start()
    for t in threads:
        t.join()
    assert not down.ok and 400 <= first_refusal(down)[1] < 500, down.describe()
    outcome['while-down'] = down

    tempfailed = []
    for marker, res in outcome.items():
        if res.ok:
            continue
        refusal = first_refusal(res)
        assert refusal and 400 <= refusal[1] < 500, (marker, res.describe())
        tempfailed.append(marker)
    assert tempfailed, 'the kill should have caught at least one session'
    for marker in tempfailed:         # the client's retry
        res = send(st, '10.20.98.1', 'load@good.example', ['hsu@example.org'], subject=marker)
        assert res.ok, res.describe()
    st.postfix.wait_queue_empty(timeout=30)
    boxes = [raw for _uid, raw in st.imap_messages('hsu@example.org')]
    for marker in outcome:
        count = sum(1 for raw in boxes if ('Subject: %s\r\n' % marker).encode() in raw)
        assert count == 1, (marker, count)


def test_directory_down_tempfails_local_recipients(env):
    st, milter = env
    st.slapd.stop()
    try:
        time.sleep(1.5)               # let the 1 s caches expire
        res = send(st, '203.0.113.60', 'someone@good.example', ['mei@example.org'])
        assert res.rcpt['mei@example.org'][0] == 451, res.describe()
        assert '4.3.0' in res.rcpt['mei@example.org'][1]
    finally:
        st.slapd.start()
    res = send(st, '203.0.113.61', 'someone@good.example', ['mei@example.org'], subject='ldap-back')
    assert res.ok, res.describe()


# --------------------------------------------------------- daemon life

def test_daemon_detaches_writes_pidfile_and_stops_cleanly_on_sigterm(env):
    _, milter = env
    port = mkstack.free_port()
    pidfile = milter.path('block.pid')
    conf = milter.path('daemon.conf')
    write(conf, milter.config_text().replace('socket = inet:%d@' % milter.port,
                                             'socket = inet:%d@' % port)
          .replace('log = stderr\n', 'log = stderr\n') + 'pidfile = %s\n' % pidfile)
    r = subprocess.run([milter.daemon.argv[0], '-c', conf], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert mkstack.port_listening(port)          # ready when the start command returns
    pid = int(open(pidfile).read())
    os.kill(pid, 0)
    # a second copy refuses to start: the pidfile is locked
    r = subprocess.run([milter.daemon.argv[0], '-f', '-c', conf, '-p', 'inet:%d@127.0.0.1'
                        % mkstack.free_port()], capture_output=True, text=True, timeout=30)
    assert r.returncode == 73 and 'another mailkeep-block is running' in r.stderr
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists('/proc/%d' % pid):
        time.sleep(0.1)
    assert not os.path.exists('/proc/%d' % pid)
    assert not os.path.exists(pidfile)


def test_foreground_sigterm_exits_zero_and_logs(env):
    _, milter = env
    port = mkstack.free_port()
    d = mkstack.Daemon([milter.daemon.argv[0], '-f', '-c', milter.config, '-p',
                        'inet:%d@127.0.0.1' % port], port=port, workdir=milter.dir,
                       name='block-sigterm')
    d.start()
    assert d.stop(sig=signal.SIGTERM) == 0
    assert 'stopping' in d.stderr()


def test_privileges_are_dropped_with_u(env):
    st, milter = env
    port = mkstack.free_port()
    d = mkstack.Daemon([milter.daemon.argv[0], '-f', '-u', 'nobody', '-c', milter.config, '-p',
                        'inet:%d@127.0.0.1' % port], port=port, workdir=milter.dir,
                       name='block-nobody')
    d.start()
    try:
        # the socket listens before the privileges go: wait for the line
        # the milter logs after dropping them
        deadline = time.monotonic() + 30
        while 'listening on' not in d.stderr():
            assert time.monotonic() < deadline, d.stderr()
            time.sleep(0.05)
        status = open('/proc/%d/status' % d.pid).read()
        uids = [line.split()[1:] for line in status.splitlines() if line.startswith('Uid:')][0]
        nobody = str(pwd.getpwnam('nobody').pw_uid)
        assert uids == [nobody] * 4, uids          # real, effective, saved, filesystem
        # and it still decides: a bad sender is refused through it
        st.postfix.set_params(smtpd_milters='inet:127.0.0.1:%d' % port)
        res = send(st, '203.0.113.70', 'x@spam.example', ['alice@example.com'])
        assert res.mail[0] == 550, res.describe()
    finally:
        st.postfix.set_params(smtpd_milters=milter.socket)
        d.stop()


def test_ldap_that_does_not_answer_times_out_as_tempfail(env):
    _, milter = env
    import socket
    hole = socket.socket()
    hole.bind(('127.0.0.1', 0))
    hole.listen(5)                  # accepts connections, never answers
    try:
        conf = milter.path('blackhole.conf')
        write(conf, milter.config_text().replace(
            milter.slapd.uri, 'ldap://127.0.0.1:%d' % hole.getsockname()[1])
            .replace('timeout = 3s', 'timeout = 2s'))
        # a hang would end in subprocess.TimeoutExpired, a failure
        r = subprocess.run([MAILKEEP, '-c', conf, 'directory', 'user', 'alice@example.com'],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 75, (r.returncode, r.stdout, r.stderr)
        assert 'cannot answer' in r.stderr
    finally:
        hole.close()
