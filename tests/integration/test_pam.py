"""pam_mailkeep through pam_wrapper and libpamtest, and through a real
Dovecot (passdb pam): second factor in the password, replay (also two
logins at once), lockout and unlock, policy from the directory and the
trusted-network exemption, application passwords, password quality and
history on change, change required at first login, after an administrator
reset (ours and ppolicy's pwdReset) and after expiry."""
import concurrent.futures
import imaplib
import os
import socket
import time

import pytest

import mkstack
from pamenv import (PASSWORD, PAM_AUTH_ERR, PAM_AUTHTOK_ERR, PAM_MAXTRIES, PAM_USER_UNKNOWN,
                    PAM_NEW_AUTHTOK_REQD, PAM_PERM_DENIED, PAM_SUCCESS, PamStack, totp,
                    otp_code, wait_fresh_step)

RFC_SEEDS = {'sha1': b'12345678901234567890',
             'sha256': b'12345678901234567890123456789012',
             'sha512': b'1234567890' * 6 + b'1234'}


@pytest.fixture(scope='module')
def stack():
    workdir = mkstack.make_workdir('mk-pam-')
    with PamStack(workdir, extra='min_length = 10\nhistory = 3\n') as s:
        # pam_mailkeep alone for LDAP accounts (bind), and in front of
        # another module (pam_matrix, pam_wrapper's password file)
        s.service('mail', auth=['required ' + s.mod('bind')],
                  account=['required ' + s.mod()])
        s.service('imap', auth=['required ' + s.mod('bind')])
        s.service('pop3', auth=['required ' + s.mod('bind')])
        s.service('chained', auth=['[success=done ignore=ignore default=die] ' + s.mod(),
                                   'required ' + s.matrix('use_first_pass')])
        s.service('ssh', auth=['[success=done ignore=ignore default=die] ' + s.mod('prompt'),
                               'required ' + s.matrix('use_first_pass')])
        s.service('passwd', account=['required ' + s.mod()],
                  password=['requisite ' + s.mod(),
                                      'required ' + s.matrix('use_authtok'),
                                      'optional ' + s.mod('record')])
        yield s


def auth(stack, user, password, service='mail', rhost='127.0.0.1'):
    return stack.pam(user, service, ['authenticate'], [password], rhost=rhost)['rc'][-1]


def test_rfc_algorithms_and_digits_log_in(stack):
    """Tokens with the RFC 6238 seeds, SHA-1/256/512 and 6 or 8 digits:
    password + current code logs in; the code alone or the password alone do not."""
    for user, algo, digits in (('alice@example.com', 'sha1', 8),
                               ('bob@example.com', 'sha256', 6),
                               ('carol@example.com', 'sha512', 8)):
        secret, recovery = stack.enroll(user, '-a' + algo, '-d%d' % digits,
                                        secret=RFC_SEEDS[algo])
        assert len(recovery) == 10
        wait_fresh_step()
        code = totp(secret, digits, algo)
        assert auth(stack, user, PASSWORD) == PAM_AUTH_ERR
        assert auth(stack, user, code) == PAM_AUTH_ERR
        assert auth(stack, user, PASSWORD + code) == PAM_SUCCESS, (user, algo)
        record = stack.record(user)
        assert 'token totp %s %d 30' % (algo.upper(), digits) in record
        assert RFC_SEEDS[algo].hex() not in record      # sealed, not in clear
        stack.mailkeep('otp', 'unlock', user)


def test_wrong_code_replay_and_window(stack):
    user = 'dave@example.com'
    secret, recovery = stack.enroll(user)
    wait_fresh_step()
    now = time.time()
    wrong = str((int(totp(secret)) + 1) % 1000000).zfill(6)
    assert auth(stack, user, PASSWORD + wrong) == PAM_AUTH_ERR
    assert auth(stack, user, 'not-the-password' + totp(secret)) == PAM_AUTH_ERR
    # a right code does not wipe the failures when the password is wrong
    assert 'failures 2 ' in stack.record(user)
    # the code was spent by the wrong password: replay protection holds
    assert auth(stack, user, PASSWORD + totp(secret)) == PAM_AUTH_ERR
    # the previous step's code is inside the window, but older than the one used
    assert auth(stack, user, PASSWORD + totp(secret, at=now - 30)) == PAM_AUTH_ERR
    wait_fresh_step(margin=31)      # next step
    assert auth(stack, user, PASSWORD + totp(secret)) == PAM_SUCCESS
    assert auth(stack, user, PASSWORD + totp(secret)) == PAM_AUTH_ERR       # replay
    # a recovery code works once
    assert auth(stack, user, PASSWORD + recovery[0]) == PAM_SUCCESS
    assert auth(stack, user, PASSWORD + recovery[0]) == PAM_AUTH_ERR
    assert auth(stack, user, PASSWORD + recovery[1].upper()) == PAM_SUCCESS
    stack.mailkeep('otp', 'unlock', user, check=True)


def test_unknown_users_with_bind(stack):
    """Under a required policy an address the directory does not know is
    unknown (not a missing second factor); a name without '@' is a system
    account, never looked for in the directory."""
    conf = open(stack.config).read()
    try:
        with open(stack.config, 'a') as f:
            f.write('[otp]\npolicy = required\n')
        assert auth(stack, 'nobody@example.com', PASSWORD + '123456') == PAM_USER_UNKNOWN
        assert auth(stack, 'root', PASSWORD) == PAM_USER_UNKNOWN
        # without bind, a system account gets the default policy: no token, refused
        assert auth(stack, 'root', PASSWORD, service='chained') == PAM_AUTH_ERR
    finally:
        with open(stack.config, 'w') as f:
            f.write(conf)


def test_two_logins_at_once_with_one_code(stack):
    user = 'erin@example.com'
    secret, _ = stack.enroll(user)
    for _ in range(3):
        wait_fresh_step(margin=8)
        code = totp(secret)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: auth(stack, user, PASSWORD + code), range(4)))
        assert sorted(results) == [PAM_SUCCESS] + [PAM_AUTH_ERR] * 3, results
        wait_fresh_step(margin=31)
    stack.mailkeep('otp', 'unlock', user, check=True)


def test_lockout_then_unlock_by_admin_and_by_time(stack):
    user = 'frank@example.com'
    secret, _ = stack.enroll(user)
    stack.write_config(stack.extra)
    with open(stack.config, 'a') as f:
        pass
    for i in range(5):
        assert auth(stack, user, PASSWORD + '000000') in (PAM_AUTH_ERR, PAM_MAXTRIES)
    # locked: even the right code is refused, and account says so
    wait_fresh_step()
    assert auth(stack, user, PASSWORD + totp(secret)) == PAM_MAXTRIES
    assert stack.pam(user, 'mail', ['account'])['rc'] == [PAM_PERM_DENIED]
    listing = stack.mailkeep('otp', 'list', user).stdout
    assert 'locked' in listing
    cp = stack.mailkeep('otp', 'unlock', user)
    assert cp.returncode == 0 and 'unlocked' in cp.stdout
    assert auth(stack, user, PASSWORD + totp(secret)) == PAM_SUCCESS
    # a lockout of 2 s ends by itself
    conf = open(stack.config).read()
    try:
        with open(stack.config, 'a') as f:
            f.write('')
        text = conf.replace('trusted_networks = 127.0.0.2/32\n',
                            'trusted_networks = 127.0.0.2/32\nmax_failures = 2\nlockout = 2s\n')
        with open(stack.config, 'w') as f:
            f.write(text)
        assert auth(stack, user, PASSWORD + '000000') == PAM_AUTH_ERR
        assert auth(stack, user, PASSWORD + '000000') == PAM_MAXTRIES
        time.sleep(2.5)
        wait_fresh_step(margin=31)
        assert auth(stack, user, PASSWORD + totp(secret)) == PAM_SUCCESS
    finally:
        with open(stack.config, 'w') as f:
            f.write(conf)


def test_policy_from_directory_and_trusted_networks(stack):
    user = 'grace@example.com'
    dn = stack.slapd.user_dn('grace')

    def policy(value):
        stack.slapd.modify('dn: %s\nchangetype: modify\nreplace: mailkeepOTPPolicy\n'
                           'mailkeepOTPPolicy: %s\n' % (dn, value))
    try:
        policy('required')          # not enrolled: refused everywhere
        assert auth(stack, user, PASSWORD) == PAM_AUTH_ERR
        assert auth(stack, user, PASSWORD, rhost='127.0.0.2') == PAM_AUTH_ERR
        policy('exempt-trusted')    # exempt from 127.0.0.2/32 only
        assert auth(stack, user, PASSWORD, rhost='127.0.0.2') == PAM_SUCCESS
        assert auth(stack, user, PASSWORD, rhost='127.0.0.1') == PAM_AUTH_ERR
        assert auth(stack, user, PASSWORD, rhost='') == PAM_AUTH_ERR
        policy('optional')          # not enrolled: the password alone
        assert auth(stack, user, PASSWORD) == PAM_SUCCESS
        assert auth(stack, user, 'wrong') == PAM_AUTH_ERR
    finally:
        policy('optional')
        stack.mailkeep('otp', 'unlock', user)


def test_group_policy(stack):
    """[otp] group_policy: members of a group must give a second factor."""
    conf = open(stack.config).read()
    try:
        with open(stack.config, 'w') as f:
            f.write(conf.replace('[password]\n', 'group_policy = sales:required\n[password]\n'))
        groups = stack.slapd.search('(member=%s)' % stack.slapd.user_dn('alice'), ['cn'])
        if not any('sales' in attrs.get('cn', []) for _, attrs in groups):
            pytest.fail('the demo directory puts alice in no sales group: %r' % groups)
        user = 'alice@example.com'   # enrolled above, in sales
        assert auth(stack, user, PASSWORD) == PAM_AUTH_ERR
    finally:
        with open(stack.config, 'w') as f:
            f.write(conf)
        stack.mailkeep('otp', 'unlock', 'alice@example.com')


def test_application_passwords(stack):
    user = 'bob@example.com'          # enrolled with a token above
    cp = stack.mailkeep('otp', 'apppass', 'add', '-s', 'imap', '-l', 'Thunderbird', user)
    assert cp.returncode == 0, cp.stderr
    app = next(l.strip() for l in cp.stdout.splitlines() if l.count('-') == 3 and
               len(l.strip()) == 19)
    assert auth(stack, user, app, service='imap') == PAM_SUCCESS
    assert auth(stack, user, app.replace('-', '').upper(), service='imap') == PAM_SUCCESS
    assert auth(stack, user, app, service='pop3') == PAM_AUTH_ERR      # another service
    assert app not in stack.record(user)                               # only its hash
    listing = stack.mailkeep('otp', 'apppass', 'list', user).stdout
    assert 'Thunderbird' in listing and 'imap' in listing and '127.0.0.1' in listing
    assert stack.mailkeep('otp', 'apppass', 'revoke', user, '1').returncode == 0
    assert auth(stack, user, app, service='imap') == PAM_AUTH_ERR
    stack.mailkeep('otp', 'unlock', user)


def test_in_front_of_another_module_and_second_prompt(stack):
    """Without bind the module decides the second factor and leaves the
    password to the next module (pam_matrix here, which asks for it itself);
    with prompt the code may come at a second prompt, and Dovecot's way of
    answering every prompt with the password counts as no code."""
    user = 'hsu@example.org'
    with open(stack.passdb, 'w') as f:
        f.write('%s:local-secret:chained\n%s:local-secret:ssh\n' % (user, user))
    secret, _ = stack.enroll(user)
    wait_fresh_step()
    r = stack.pam(user, 'chained', ['authenticate'], ['local-secret' + totp(secret), 'local-secret'])
    assert r['rc'] == [PAM_SUCCESS]
    wait_fresh_step(margin=31)
    r = stack.pam(user, 'chained', ['authenticate'], ['local-secret' + totp(secret), 'wrong'])
    assert r['rc'] == [PAM_AUTH_ERR]        # the code was right, the password not
    r = stack.pam(user, 'chained', ['authenticate'], ['local-secret000000', 'local-secret'])
    assert r['rc'] == [PAM_AUTH_ERR]        # the password was right, the code not
    wait_fresh_step(margin=31)
    r = stack.pam(user, 'ssh', ['authenticate'], ['local-secret', totp(secret), 'local-secret'])
    assert r['rc'] == [PAM_SUCCESS]
    r = stack.pam(user, 'ssh', ['authenticate'], ['local-secret'] * 3)
    assert r['rc'] == [PAM_AUTH_ERR]
    stack.mailkeep('otp', 'unlock', user)


def test_password_change_quality_and_history(stack):
    user = 'mei@example.org'
    with open(stack.passdb, 'w') as f:
        f.write('%s:Old-Pass-2026x:passwd\n' % user)

    def change(new):
        return stack.pam(user, 'passwd', ['chauthtok'], ['Old-Pass-2026x', new, new])

    for weak in ('short1A!', 'password123', 'mei-is-Great-2026', 'aaaaaaaaaaaa'):
        r = change(weak)
        assert r['rc'] == [PAM_AUTHTOK_ERR], (weak, r)
    stack.mailkeep('password', 'expire', user, check=True)
    assert stack.pam(user, 'passwd', ['account'])['rc'] == [PAM_NEW_AUTHTOK_REQD]
    assert change('Tall-Tree-Rain-71')['rc'] == [PAM_SUCCESS]
    record = stack.record(user)
    assert 'changed ' in record and 'mustchange' not in record
    assert 'history ' in record and '$y$' in record and 'Tall-Tree' not in record
    # the change cleared the administrator's reset
    assert stack.pam(user, 'passwd', ['account'])['rc'] == [PAM_SUCCESS]
    with open(stack.passdb, 'w') as f:
        f.write('%s:Tall-Tree-Rain-71:passwd\n' % user)
    r = stack.pam(user, 'passwd', ['chauthtok'],
                  ['Tall-Tree-Rain-71', 'Tall-Tree-Rain-71', 'Tall-Tree-Rain-71'])
    assert r['rc'] == [PAM_AUTHTOK_ERR]                                  # reused


def test_first_login_expiry_and_ldap_reset(stack):
    conf = open(stack.config).read()
    try:
        with open(stack.config, 'w') as f:
            f.write(conf + 'must_change_first = yes\n')
        # jun has never changed a password through us: first login
        assert stack.pam('jun@example.org', 'mail', ['account'])['rc'] == [PAM_NEW_AUTHTOK_REQD]
        # mei changed hers above: fine, until it is older than max_age
        assert stack.pam('mei@example.org', 'mail', ['account'])['rc'] == [PAM_SUCCESS]
        with open(stack.config, 'w') as f:
            f.write(conf + 'max_age = 1s\n')
        time.sleep(1.5)
        assert stack.pam('mei@example.org', 'mail', ['account'])['rc'] == [PAM_NEW_AUTHTOK_REQD]
    finally:
        with open(stack.config, 'w') as f:
            f.write(conf)
    # ppolicy: an administrator sets wei's password; pwdReset does not stop
    # an LDAP bind, but pam_mailkeep's account check does
    user = 'wei@example.org'
    assert stack.pam(user, 'mail', ['authenticate', 'account'], [PASSWORD])['rc'] == [0, 0]
    stack.slapd.modify('dn: %s\nchangetype: modify\nreplace: userPassword\n'
                       'userPassword: %s\n' % (stack.slapd.user_dn('wei'), PASSWORD))
    reset = stack.slapd.search('(mail=%s)' % user, ['pwdReset'])
    assert reset and (reset[0][1].get('pwdReset') or reset[0][1].get('pwdreset')) == ['TRUE'], reset
    r = stack.pam(user, 'mail', ['authenticate', 'account'], [PASSWORD])
    assert r['rc'] == [PAM_SUCCESS, PAM_NEW_AUTHTOK_REQD]


def test_report_passwords(stack):
    cp = stack.mailkeep('report', 'passwords', '-s')
    assert cp.returncode == 0, cp.stderr
    out = cp.stdout
    assert 'accounts' in out and 'second factor' in out
    lines = {l.split()[0]: l for l in out.splitlines() if '@' in l.split()[0:1][0:1][0]
             if l.split()} if False else {}
    for line in out.splitlines():
        if line.startswith('mei@example.org'):
            assert ' ok ' in line or 'expired' in line
        if line.startswith('alice@example.com'):
            assert ' yes ' in line            # enrolled


class _SourceIMAP(imaplib.IMAP4):
    """IMAP from a chosen loopback address (Dovecot passes it as PAM_RHOST)."""

    def __init__(self, host, port, source):
        self._source = source
        super().__init__(host, port, timeout=10)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


def imap_login(port, user, password, source='127.0.0.1'):
    conn = _SourceIMAP(mkstack.LOOPBACK, port, source)
    try:
        conn.login(user, password)
        conn.logout()
        return True
    except imaplib.IMAP4.error:
        return False


def test_dovecot_imap_through_pam(stack):
    """A real Dovecot with passdb pam and the module: password+code,
    an application password, a refused password alone, the trusted
    network, and a password that must change."""
    stack.service('dovecot', auth=['required ' + stack.mod('bind')],
                  account=['required ' + stack.mod()])
    d = stack.start_dovecot()
    user = 'carol@example.com'                  # enrolled: sha512, 8 digits
    stack.mailkeep('otp', 'unlock', user)
    assert imap_login(d.imap_port, 'alice@example.com', 'nope') is False
    assert imap_login(d.imap_port, user, PASSWORD) is False
    wait_fresh_step()
    assert imap_login(d.imap_port, user, PASSWORD + totp(RFC_SEEDS['sha512'], 8, 'sha512'))
    cp = stack.mailkeep('otp', 'apppass', 'add', '-l', 'phone', user)
    assert cp.returncode == 64 and '-s names the service' in cp.stderr
    cp = stack.mailkeep('otp', 'apppass', 'add', '-s', '*', '-l', 'phone', user)
    app = next(l.strip() for l in cp.stdout.splitlines() if l.count('-') == 3 and
               len(l.strip()) == 19)
    assert imap_login(d.imap_port, user, app)
    # exempt-trusted from 127.0.0.2 (the test's [otp] trusted_networks)
    dn = stack.slapd.user_dn('carol')
    stack.slapd.modify('dn: %s\nchangetype: modify\nreplace: mailkeepOTPPolicy\n'
                       'mailkeepOTPPolicy: exempt-trusted\n' % dn)
    assert imap_login(d.imap_port, 'grace@example.com', PASSWORD, source='127.0.0.2')
    # an enrolled user is still asked for the code from a trusted network?
    # no: exempt-trusted waives it there
    assert imap_login(d.imap_port, user, PASSWORD, source='127.0.0.2')
    assert imap_login(d.imap_port, user, PASSWORD, source='127.0.0.1') is False
    # a client that adds the code anyway is let in there too: the code is
    # taken off before the password is checked, and spent (the next step's
    # code, inside the window: this step's was spent above)
    wait_fresh_step()
    code = totp(RFC_SEEDS['sha512'], 8, 'sha512', at=time.time() + 30)
    assert imap_login(d.imap_port, user, PASSWORD + code, source='127.0.0.2')
    assert imap_login(d.imap_port, user, PASSWORD + code, source='127.0.0.1') is False
    # wei's password was reset by the administrator: IMAP refuses until changed
    assert imap_login(d.imap_port, 'wei@example.org', PASSWORD) is False
    log = open(d.log_path).read()
    assert 'refused until the password is changed (reset)' in log or 'pam_acct_mgmt' in log
