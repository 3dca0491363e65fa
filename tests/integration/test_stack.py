"""Proves the integration harness (tests/harness/mkstack.py) works.

Run: python3 -m pytest -q tests/integration/test_stack.py
"""
import re
import uuid

import mkstack

ALICE = 'alice@example.com'
PW = 'mailkeep'


def token():
    return 'mk-' + uuid.uuid4().hex[:12]


def test_ldap_has_the_demo_users(stack):
    s = stack.slapd
    # the milters' read-only service account can see all twelve users
    entries = s.search('(objectClass=inetOrgPerson)',
                       ['mail', 'mailkeepRole', 'cn'],
                       bind_dn=s.service_dn, bind_pw=s.service_pw)
    mails = sorted(e[1]['mail'][0] for e in entries)
    assert mails == sorted(mkstack.DEMO_USERS)
    roles = {e[1]['mail'][0]: e[1]['mailkeeprole'][0] for e in entries}
    assert roles['admin@example.com'] == 'org-admin'
    assert roles['jun@example.org'] == 'domain-admin'
    assert roles['grace@example.com'] == 'auditor'
    assert roles['frank@example.com'] == 'privacy-officer'
    assert roles['alice@example.com'] == 'user'
    cns = {e[1]['mail'][0]: e[1]['cn'] for e in entries}
    assert '陳怡君' in cns['grace@example.com']
    # personal lists are searchable case-insensitively
    hit = s.search('(mailkeepBlockedSender=@JUNK.Example)', ['mail'])
    assert [e[1]['mail'][0] for e in hit] == [ALICE]
    bob = s.search('(mail=bob@example.com)',
                   ['mailkeepBlockMode', 'mailkeepAllowedSender'])[0][1]
    assert bob == {'mailkeepblockmode': ['tag'],
                   'mailkeepallowedsender': ['news@promo.example']}
    # userPassword is not readable by the service account
    pw = s.search('(uid=alice)', ['userPassword'],
                  bind_dn=s.service_dn, bind_pw=s.service_pw)
    assert pw[0][1] == {}


def test_mail_to_alice_arrives_over_imap_and_pop3(stack):
    t = token()
    r = stack.send('sender@client.example', [ALICE], subject=t)
    assert r.ok, r.describe()
    assert r.queue_id
    raw = stack.wait_for_message(ALICE, t)
    assert b'Subject: ' + t.encode() in raw
    assert b'Delivered-To: alice@example.com' in raw
    pop = mkstack.pop3_messages(stack.pop3_port, ALICE, PW)
    assert any(t.encode() in m for m in pop)


def test_external_mail_reaches_the_sink(stack):
    before = stack.sink.received_count()
    t = token()
    r = stack.send('carol@example.com', ['someone@external.example'], subject=t)
    assert r.ok, r.describe()
    stack.sink.wait_count(before + 1)
    assert any(t.encode() in m for m in stack.sink.messages())


def _client_in_log(stack, queue_id, addr):
    return stack.postfix.wait_log(
        r'%s: client=[^\s\[]*\[%s\]' % (queue_id, re.escape(addr)))


def test_xclient_ipv4(stack):
    t = token()
    r = stack.send('sender@client.example', [ALICE], subject=t,
                   xclient={'ADDR': '192.0.2.7', 'NAME': '[UNAVAILABLE]',
                            'HELO': 'xclient.example'})
    assert r.xclient[0] == 220, r.describe()
    assert r.ok, r.describe()
    _client_in_log(stack, r.queue_id, '192.0.2.7')
    raw = stack.wait_for_message(ALICE, t)
    assert b'192.0.2.7' in raw          # in Postfix's Received: header


def test_xclient_ipv6(stack):
    t = token()
    r = stack.send('sender@client.example', [ALICE], subject=t,
                   xclient={'ADDR': 'IPV6:2001:db8::5', 'NAME': '[UNAVAILABLE]'})
    assert r.xclient[0] == 220, r.describe()
    assert r.ok, r.describe()
    _client_in_log(stack, r.queue_id, '2001:db8::5')
    stack.wait_for_message(ALICE, t)


def test_xclient_client_is_no_longer_trusted_for_relaying(stack):
    # 192.0.2.7 is outside mynetworks: relaying needs SASL from there.
    r = stack.send('x@client.example', ['someone@external.example'],
                   xclient={'ADDR': '192.0.2.7'})
    assert r.rcpt['someone@external.example'][0] == 454, r.describe()
    assert not r.ok


def test_sasl_auth_plain(stack):
    before = stack.sink.received_count()
    r = stack.send(ALICE, ['someone@external.example'], auth=(ALICE, PW),
                   xclient={'ADDR': '192.0.2.8'})
    assert r.auth[0] == 235, r.describe()
    assert 'AUTH PLAIN LOGIN' in r.ehlo_features
    assert r.ok, r.describe()
    stack.postfix.wait_log(r'%s: client=\S+, sasl_method=PLAIN, '
                           r'sasl_username=alice@example\.com' % r.queue_id)
    stack.sink.wait_count(before + 1)


def test_sasl_wrong_password_fails(stack):
    r = stack.send(ALICE, [ALICE], auth=(ALICE, 'wrong'))
    assert r.auth[0] == 535, r.describe()
    assert r.mail is None and not r.ok


def test_sendmail_local_submission(stack):
    t = token()
    msg = 'From: root@mail.example.com\nTo: carol@example.com\nSubject: %s\n\nlocal\n' % t
    cp = stack.postfix.sendmail('root@mail.example.com', ['carol@example.com'], msg)
    assert cp.returncode == 0, cp.stderr
    raw = stack.wait_for_message('carol@example.com', t)
    assert b'Return-Path: <root@mail.example.com>' in raw


def test_unknown_user_is_rejected_by_lmtp(stack):
    r = stack.send('nobody@client.example', ['nosuchuser@example.com'])
    assert r.ok, r.describe()   # Postfix itself does no recipient validation
    stack.postfix.wait_log(r'%s: to=<nosuchuser@example\.com>.*status=bounced'
                           % r.queue_id)


def test_blocked_header_files_into_junk_per_recipient(stack):
    t = token()
    r = stack.send('news@promo.example', ['bob@example.com', 'carol@example.com'],
                   subject=t, headers={'X-Mailkeep-Blocked': 'bob@example.com'})
    assert r.ok, r.describe()
    assert sorted(r.accepted_rcpts) == ['bob@example.com', 'carol@example.com']
    stack.wait_for_message('bob@example.com', t, folder='Junk')
    stack.wait_for_message('carol@example.com', t, folder='INBOX')
    assert not any(t.encode() in m
                   for _u, m in stack.imap_messages('bob@example.com'))
    assert not any(t.encode() in m
                   for _u, m in stack.imap_messages('carol@example.com', 'Junk'))
