#!/usr/bin/python3
"""The Mailkeep sandbox: the whole system on loopback, for trying it out.

    sandbox.py start    start everything in the background, print where it is
    sandbox.py stop     stop everything
    sandbox.py status   print where everything is, if running

It runs the same real servers as the tests (tests/harness/mkstack.py):
slapd with the demo directory, Dovecot (LMTP, IMAP, POP3, Sieve), Postfix
with the Mailkeep milters, smtp-sink standing for the Internet, on fixed
loopback ports, with its state in /var/tmp/mailkeep-sandbox. A small
supervisor process keeps them running until `stop`.

When pam_mailkeep.so is built, Dovecot (and so Postfix's SMTP AUTH, which
asks Dovecot) authenticates through PAM: the service file
/etc/pam.d/mailkeep-sandbox exists while the sandbox runs, and
dave@example.com logs in with his password and a code.

When the mailkeep_crypt plugin is built, Dovecot saves every new message
encrypted (mailkeep_crypt(7)), with a server key, an escrow key pair and a
key directory made at the first start in $STATE/crypt and kept after.
"""
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'harness'))
import mkstack  # noqa: E402
from mkaudit import AuditD, plugin_modules  # noqa: E402

BUILDDIR = os.path.abspath(os.environ.get('MK_BUILDDIR', os.path.join(ROOT, 'build')))
STATE = os.environ.get('MK_SANDBOX_DIR', '/var/tmp/mailkeep-sandbox')
PIDFILE = os.path.join(STATE, 'supervisor.pid')
INFO = os.path.join(STATE, 'sandbox.json')
PORTS = {'smtp': 2525, 'imap': 1143, 'pop3': 1110, 'lmtp': 2424, 'dovecot_auth': 2426,
         'ldap': 3389, 'sink': 2526, 'block': 10025, 'dlp': 10026, 'av': 10027,
         'recall': 10028, 'journal': 10029}

# pam_mailkeep: the PAM service Dovecot's passdb uses while the sandbox runs
PAM_MODULE = os.path.join(BUILDDIR, 'pam', 'pam_mailkeep.so')
PAM_SERVICE = 'mailkeep-sandbox'
PAM_SERVICE_FILE = os.path.join('/etc/pam.d', PAM_SERVICE)
PAM_MARK = '# written by contrib/sandbox/mailkeep-sandbox up, removed by down'
# The demo user with a second factor. His secret is fixed and published so
# that anyone can compute his codes with oathtool: a demo only. Real users
# are enrolled with a random secret (mailkeep otp enroll USER).
OTP_USER = 'dave@example.com'
OTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'

# mailkeep_crypt: the plugin, and where its keys are kept
CRYPT_PLUGIN = os.path.join(BUILDDIR, 'dovecot-plugins', 'lib90_mailkeep_crypt_plugin.so')
CRYPT_DIR = os.path.join(STATE, 'crypt')

EICAR = b'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'

LISTS = {
    'bad-clients': '# Client networks refused at connect (mailkeep-block(8), LIST FILES)\n'
                   '192.0.2.0/24\n2001:db8:bad::/48\n',
    'allow-clients': '# Clients never blocked\n192.0.2.77\n',
    'bad-senders': '# Senders refused at MAIL FROM\n@spam.example\n/^offer[0-9]+@/\n',
    'allow-senders': '# Senders never blocked\nfriend@spam.example\n',
}


def base_config(what, slapd, extra_global='', extra_ldap=''):
    """The [global] and [ldap] sections every sandbox milter shares."""
    return f"""# mailkeep.conf for the sandbox's {what}
[global]
log = stderr
directory = ldap
trusted_networks = 127.0.0.0/8 ::1/128
{extra_global}
[ldap]
uri = {slapd.uri}
base = {slapd.base_dn}
bind_dn = {slapd.service_dn}
bind_password = {slapd.service_pw}
{extra_ldap}"""


def block_config(slapd):
    d = os.path.join(STATE, 'block')
    return base_config('mailkeep-block: see mailkeep.conf(5), mailkeep-block(8)', slapd,
                       'reload_interval = 2s\n',
                       'cache_ttl = 10s\nnegative_cache_ttl = 10s\n') + f"""
[block]
socket = inet:{PORTS['block']}@127.0.0.1
bad_clients = {d}/bad-clients
allow_clients = {d}/allow-clients
bad_senders = {d}/bad-senders
allow_senders = {d}/allow-senders
personal_list_dir = {d}/personal
dictionary_limit = 5
client_rate_limit = 100
"""


def dlp_config(slapd, postfix_config):
    d = os.path.join(STATE, 'dlp')
    return base_config('mailkeep-dlp: see mailkeep.conf(5), mailkeep-dlp(8)', slapd) + f"""
[dlp]
socket = inet:{PORTS['dlp']}@127.0.0.1
incident_log = {d}/incidents.jsonl
notify_from = postmaster@example.com
notify_command = /usr/sbin/sendmail -C {postfix_config} -oi -t
unscannable_action = quarantine

[quarantine]
postfix_config = {postfix_config}

# National IDs and resident certificates leaving the organisation wait for a person.
[rule outbound-ids]
direction = outbound
detectors = tw_national_id:high, tw_resident_cert:high
action = quarantine

# Card numbers never leave.
[rule outbound-cards]
direction = outbound
detectors = payment_card
action = reject

# Inside, the sender is told; the mail goes through.
[rule internal-ids]
direction = internal
detectors = tw_national_id, tw_resident_cert, payment_card
action = warn
subject_prefix = [個資]

# What comes in is marked for the recipient.
[rule inbound-ids]
direction = inbound
detectors = tw_national_id, payment_card
action = tag
subject_prefix = [個資]

# An example of a site's own detector: employee numbers.
[detector employee_id]
pattern = \\bEMP-[0-9]{{6}}\\b
keywords = 員工編號, employee
min_count = 1

[rule staff-numbers-out]
direction = outbound
detectors = employee_id:medium:5
action = quarantine
"""


def av_setup(slapd, postfix_config):
    """mailkeep-av's directory: a signature for the EICAR test file made
    with sigtool (no signatures can be downloaded here; with network, run
    freshclam and set database_dir = /var/lib/clamav), the test file itself,
    and the configuration."""
    d = os.path.join(STATE, 'av')
    db = os.path.join(d, 'db')
    os.makedirs(db, exist_ok=True)
    sample = os.path.join(d, 'eicar.com')
    with open(sample, 'wb') as f:
        f.write(EICAR)
    line = subprocess.run(['sigtool', '--md5', sample], capture_output=True, text=True,
                          check=True).stdout.strip()
    md5, size, _ = line.split(':', 2)
    with open(os.path.join(db, 'sandbox.hdb'), 'w') as f:
        f.write('%s:%s:Eicar-Test-Signature\n' % (md5, size))
    conf = os.path.join(d, 'mailkeep.conf')
    with open(conf, 'w') as f:
        f.write(base_config('mailkeep-av: see mailkeep.conf(5), mailkeep-av(8)', slapd) + f"""
[av]
socket = inet:{PORTS['av']}@127.0.0.1
# with network access: apt-get install clamav-freshclam, and use /var/lib/clamav
database_dir = {db}
temp_dir = {d}
inbound_action = reject
outbound_action = quarantine
internal_action = replace
notify_admin = admin@example.com
notify_sender = outbound
notify_from = postmaster@example.com
notify_command = /usr/sbin/sendmail -C {postfix_config} -oi -t
""")
    return conf, sample


def archive_setup(slapd, dovecot_config):
    """mailkeep-journal's configuration and the archive's, one file for
    both (the milter and the mailkeep command read the same settings);
    the archive and its keys are made once and kept across restarts."""
    d = os.path.join(STATE, 'archive')
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, 'mailkeep.conf')
    with open(conf, 'w') as f:
        f.write(base_config('mailkeep-journal and the archive: see mailkeep.conf(5), '
                            'mailkeep-journal(8), mailkeep(8)', slapd) + f"""
[journal]
socket = inet:{PORTS['journal']}@127.0.0.1
spool_dir = {d}/spool

[archive]
dir = {d}/store
keys_dir = {d}/keys
doveadm = /usr/bin/doveadm -c {dovecot_config}
""")
    if not os.path.exists(os.path.join(d, 'keys', 'archive.key')):
        subprocess.run([os.path.join(BUILDDIR, 'tools', 'mailkeep'), '-c', conf, 'archive',
                        'init'], check=True, stdout=subprocess.DEVNULL)
    return conf


def recall_setup(slapd, audit, dovecot, postfix_config):
    """mailkeep-recall's configuration, which `mailkeep recall` reads too:
    the mailkeep_audit plugin's read marks ([audit]) tell it what reached
    a client; the sales group (alice, bob, carol) has a 60 s undo-send
    window for mail leaving the organisation."""
    d = os.path.join(STATE, 'recall')
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, 'mailkeep.conf')
    with open(conf, 'w') as f:
        f.write(base_config('mailkeep-recall and mailkeep recall: see mailkeep-recall(8), '
                            'mailkeep.conf(5)', slapd) + f"""
[audit]
socket = {audit.socket}
db = {audit.db}

[recall]
socket = inet:{PORTS['recall']}@127.0.0.1
db = {d}/recall.sqlite
undo_send_groups = sales:60s
notice = yes
notice_from = postmaster@example.com
doveadm = /usr/bin/doveadm -c {dovecot.conf_path}
postfix_config = {postfix_config}
auth_socket = {dovecot.base_dir}/auth-client
""")
    return conf


def otp_config(slapd):
    d = os.path.join(STATE, 'otp')
    return base_config('pam_mailkeep and mailkeep otp: see pam_mailkeep(8), mailkeep(8)',
                       slapd) + f"""
[otp]
store = {d}/store
key_file = {d}/otp.key
# no network is spared the second factor (policy exempt-trusted)
trusted_networks =
"""


def otp_setup(slapd):
    """pam_mailkeep's configuration and second-factor store (root's only),
    and dave, whom the directory obliges to give a code, enrolled with the
    demo secret. A second start finds him enrolled and leaves him so."""
    d = os.path.join(STATE, 'otp')
    store = os.path.join(d, 'store')
    for path in (d, store):
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    conf = os.path.join(d, 'mailkeep.conf')
    fd = os.open(conf + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        f.write(otp_config(slapd))          # holds the directory's service password
    os.replace(conf + '.tmp', conf)
    slapd.modify('dn: %s\nchangetype: modify\nreplace: mailkeepOTPPolicy\n'
                 'mailkeepOTPPolicy: required\n' % slapd.user_dn(OTP_USER.split('@')[0]))
    otp = [os.path.join(BUILDDIR, 'tools', 'mailkeep'), '-c', conf, 'otp']
    listed = subprocess.run(otp + ['list', OTP_USER], capture_output=True, text=True,
                            check=True).stdout
    if not listed.startswith(OTP_USER + ': totp'):
        subprocess.run(otp + ['enroll', '-K', '-q', OTP_USER], input=OTP_SECRET + '\n',
                       text=True, check=True, stdout=subprocess.DEVNULL)
        # Confirm with the code of the step before the current one (within
        # [otp] window): the store keeps the last step used, so the code
        # oathtool shows now is still good for the first login.
        if 30 - time.time() % 30 < 3:
            time.sleep(3)
        code = subprocess.run(['oathtool', '--totp', '-b', '-N', '@%d' % (time.time() - 30),
                               OTP_SECRET], capture_output=True, text=True,
                              check=True).stdout.strip()
        confirmed = subprocess.run(otp + ['confirm', OTP_USER, code], capture_output=True,
                                   text=True, check=True).stdout
        # the recovery codes, each good once instead of a code
        fd = os.open(os.path.join(d, 'dave.recovery'),
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(confirmed)
    return conf


def crypt_setup(dovecot):
    """mailkeep_crypt's keys, made at the first start and kept after (the
    mail saved with them stays in the sandbox's mailboxes): the server key
    (32 random bytes as 64 hex digits, the mail user's, 0600), an escrow
    X25519 key pair (the private key as 64 hex digits, root's, 0600, kept
    here for the demo only: a real site keeps it away from the mail
    servers; the public key likewise) and the user key directory (the mail
    user's, 0700): what "mailkeep crypt init -e" makes, in the files
    "mailkeep crypt recover -k" reads."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    uid, gid = dovecot.mail_uid, dovecot.mail_gid
    d = CRYPT_DIR
    keys = os.path.join(d, 'keys')
    server_key = os.path.join(d, 'server.key')
    escrow_pem = os.path.join(d, 'escrow.key')
    escrow_pub = os.path.join(d, 'escrow.pub')
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)                      # the mail user reaches its files
    os.makedirs(keys, mode=0o700, exist_ok=True)
    os.chown(keys, uid, gid)
    os.chmod(keys, 0o700)
    if not os.path.exists(server_key):
        fd = os.open(server_key + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(os.urandom(32).hex() + '\n')
        os.replace(server_key + '.tmp', server_key)
    os.chown(server_key, uid, gid)
    os.chmod(server_key, 0o600)
    if not os.path.exists(escrow_pem):
        private = X25519PrivateKey.generate()
        fd = os.open(escrow_pem + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(private.private_bytes(serialization.Encoding.Raw,
                                          serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption()).hex() + '\n')
        os.replace(escrow_pem + '.tmp', escrow_pem)
        if os.path.exists(escrow_pub):
            os.unlink(escrow_pub)           # a new pair: the public half follows
    os.chown(escrow_pem, 0, 0)
    os.chmod(escrow_pem, 0o600)
    if not os.path.exists(escrow_pub):
        with open(escrow_pem) as f:
            private = X25519PrivateKey.from_private_bytes(bytes.fromhex(f.read().strip()))
        raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        with open(escrow_pub + '.tmp', 'w') as f:
            f.write(raw.hex() + '\n')
        os.chmod(escrow_pub + '.tmp', 0o644)
        os.replace(escrow_pub + '.tmp', escrow_pub)
    return {'mailkeep_crypt': 'yes', 'mailkeep_crypt_keys': keys,
            'mailkeep_crypt_server_key': server_key,
            'mailkeep_crypt_escrow_key': escrow_pub}, escrow_pem


def pam_service_write(conf):
    """The PAM service Dovecot's passdb names: pam_mailkeep alone checks
    the password (an LDAP bind), the second factor and lockout."""
    text = f"""{PAM_MARK}
# Dovecot's passdb pam (service {PAM_SERVICE}); see pam_mailkeep(8).
auth    required {PAM_MODULE} config={conf} bind
account required {PAM_MODULE} config={conf}
"""
    with open(PAM_SERVICE_FILE + '.tmp', 'w') as f:
        f.write(text)
    os.chmod(PAM_SERVICE_FILE + '.tmp', 0o644)
    os.replace(PAM_SERVICE_FILE + '.tmp', PAM_SERVICE_FILE)


def pam_service_remove():
    """Remove the service file, if it is the sandbox's."""
    try:
        with open(PAM_SERVICE_FILE) as f:
            ours = f.readline().rstrip('\n') == PAM_MARK
    except FileNotFoundError:
        return
    if ours:
        os.unlink(PAM_SERVICE_FILE)


def serve():
    """The supervisor: start everything, write the info file, wait for SIGTERM."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    st = mkstack.Stack(workdir=STATE, keep=True)
    st.slapd.port = PORTS['ldap']
    st.slapd.uri = 'ldap://127.0.0.1:%d' % PORTS['ldap']
    dv = st.dovecot
    dv.imap_port, dv.pop3_port, dv.lmtp_port, dv.auth_port = (
        PORTS['imap'], PORTS['pop3'], PORTS['lmtp'], PORTS['dovecot_auth'])
    dv.instance_name = 'mailkeep-sandbox'
    st.sink.port = PORTS['sink']
    block = None
    daemons = []
    pam_conf = None
    try:
        st.slapd.start()
        if os.path.exists(PAM_MODULE):
            pam_conf = otp_setup(st.slapd)
            pam_service_write(pam_conf)
            dv.passdb = '  driver = pam\n  args = failure_show_msg=yes %s' % PAM_SERVICE
        bdir = os.path.join(STATE, 'block')
        os.makedirs(os.path.join(bdir, 'personal'), exist_ok=True)
        for name, text in LISTS.items():
            path = os.path.join(bdir, name)
            if not os.path.exists(path):
                with open(path, 'w') as f:
                    f.write(text)
        conf = os.path.join(bdir, 'mailkeep.conf')
        with open(conf, 'w') as f:
            f.write(block_config(st.slapd))
        block = mkstack.Daemon([os.path.join(BUILDDIR, 'milters', 'block', 'mailkeep-block'),
                                '-f', '-c', conf], port=PORTS['block'], workdir=bdir,
                               name='mailkeep-block')
        block.start()
        audit = None
        if all(os.path.exists(p) for p in plugin_modules() + [mkaudit_binary()]):
            # mailkeep-auditd first: Dovecot refuses sessions it cannot audit
            audit = AuditD(os.path.join(STATE, 'audit'))
            audit.set_doveadm('/usr/bin/doveadm -c %s' % dv.conf_path)
            audit.start()
            daemons.append(audit.daemon)
            dv.mail_plugins = 'notify mailkeep_audit mailkeep_usage'
            dv.plugin_modules = plugin_modules()
            dv.plugin_settings = audit.plugin_settings()
            dv.extra_conf = 'import_environment = $import_environment MAILKEEP_ADMIN SUDO_USER\n'
        crypt = None
        if os.path.exists(CRYPT_PLUGIN):
            # mailkeep_crypt: every message saved from now on is encrypted at
            # rest; the index cache, which would keep headers in clear, is off
            crypt, escrow_pem = crypt_setup(dv)
            dv.mail_plugins = (dv.mail_plugins + ' mailkeep_crypt').strip()
            dv.plugin_modules = dv.plugin_modules + [CRYPT_PLUGIN]
            dv.plugin_settings = dict(dv.plugin_settings, **crypt)
            dv.extra_conf += 'mail_never_cache_fields = *\n'
        st.dovecot.start()
        if audit is not None:
            # accounts the plugin has not seen yet, so that the report lists every one
            audit.mailkeep('usage', 'scan', '-A')
        st.sink.start()
        milters = 'inet:127.0.0.1:%d' % PORTS['block']
        st.postfix = mkstack.Postfix(STATE, st.dovecot, st.sink, port=PORTS['smtp'],
                                     smtpd_milters=milters)
        st.postfix.start()
        st.started = True
        dlp = None
        non_smtpd = []
        dlp_binary = os.path.join(BUILDDIR, 'milters', 'dlp', 'mailkeep-dlp')
        if os.path.exists(dlp_binary):
            ddir = os.path.join(STATE, 'dlp')
            os.makedirs(ddir, exist_ok=True)
            dconf = os.path.join(ddir, 'mailkeep.conf')
            with open(dconf, 'w') as f:
                f.write(dlp_config(st.slapd, st.postfix.config_dir))
            dlp = mkstack.Daemon([dlp_binary, '-f', '-c', dconf], port=PORTS['dlp'],
                                 workdir=ddir, name='mailkeep-dlp')
            dlp.start()
            daemons.append(dlp)
            dsock = 'inet:127.0.0.1:%d' % PORTS['dlp']
            milters += ', ' + dsock
            non_smtpd.append(dsock)
            st.postfix.set_params(smtpd_milters=milters, non_smtpd_milters=dsock)
        av = None
        av_binary = os.path.join(BUILDDIR, 'milters', 'av', 'mailkeep-av')
        if os.path.exists(av_binary):
            aconf, eicar = av_setup(st.slapd, st.postfix.config_dir)
            av = mkstack.Daemon([av_binary, '-f', '-c', aconf], port=PORTS['av'],
                                workdir=os.path.join(STATE, 'av'), name='mailkeep-av')
            av.start()
            daemons.append(av)
            # the gateway order: block the sender first, then scan
            block_sock = 'inet:127.0.0.1:%d' % PORTS['block']
            av_sock = 'inet:127.0.0.1:%d' % PORTS['av']
            milters = milters.replace(block_sock, block_sock + ', ' + av_sock)
            st.postfix.set_params(smtpd_milters=milters)
        recall = None
        rc_binary = os.path.join(BUILDDIR, 'milters', 'recall', 'mailkeep-recall')
        if os.path.exists(rc_binary) and audit is not None:
            rconf = recall_setup(st.slapd, audit, st.dovecot, st.postfix.config_dir)
            rdir = os.path.join(STATE, 'recall')
            recall = mkstack.Daemon([rc_binary, '-f', '-c', rconf], port=PORTS['recall'],
                                    workdir=rdir, name='mailkeep-recall')
            recall.start()
            daemons.append(recall)
            # undo-send's releaser, as its systemd service would run it
            release = mkstack.Daemon([os.path.join(BUILDDIR, 'tools', 'mailkeep'), '-c', rconf,
                                      'recall', 'release', '-w'], workdir=rdir,
                                     name='mailkeep-recall-release')
            release.start()
            daemons.append(release)
        journal = None
        jr_binary = os.path.join(BUILDDIR, 'milters', 'journal', 'mailkeep-journal')
        mailkeep = os.path.join(BUILDDIR, 'tools', 'mailkeep')
        if os.path.exists(jr_binary) and os.path.exists(mailkeep):
            jconf = archive_setup(st.slapd, st.dovecot.conf_path)
            jdir = os.path.join(STATE, 'archive')
            journal = mkstack.Daemon([jr_binary, '-f', '-c', jconf], port=PORTS['journal'],
                                     workdir=jdir, name='mailkeep-journal')
            journal.start()
            daemons.append(journal)
            # the archive's ingest, as its systemd service would run it
            ingest = mkstack.Daemon([mailkeep, '-c', jconf, 'archive', 'ingest', '-w'],
                                    workdir=jdir, name='mailkeep-archive-ingest')
            ingest.start()
            daemons.append(ingest)
            # the journal comes last, and sees local submission too
            jsock = 'inet:127.0.0.1:%d' % PORTS['journal']
            milters += ', ' + jsock
            non_smtpd.append(jsock)
            st.postfix.set_params(smtpd_milters=milters, non_smtpd_milters=', '.join(non_smtpd))
        if recall is not None:
            # last: Postfix passes a message a milter holds (undo-send) to no
            # later milter, and the journal must see it
            rsock = 'inet:127.0.0.1:%d' % PORTS['recall']
            milters += ', ' + rsock
            non_smtpd.append(rsock)
            st.postfix.set_params(smtpd_milters=milters, non_smtpd_milters=', '.join(non_smtpd))
        info = {
            'pid': os.getpid(),
            'state': STATE,
            'ports': PORTS,
            'smtp_port': st.smtp_port,
            'postfix_config': st.postfix.config_dir,
            'maillog': st.postfix.maillog,
            'dovecot_config': st.dovecot.conf_path,
            'dovecot_log': st.dovecot.log_path,
            'ldap_uri': st.slapd.uri,
            'ldap_admin': [st.slapd.admin_dn, st.slapd.admin_pw],
            'block_config': conf,
            'block_lists': bdir,
            'block_log': block.stderr_path,
            'block_pid': block.pid,
            'sink_dump': st.sink.dump_dir,
            'dlp_config': os.path.join(STATE, 'dlp', 'mailkeep.conf') if dlp else None,
            'dlp_log': dlp.stderr_path if dlp else None,
            'dlp_incidents': os.path.join(STATE, 'dlp', 'incidents.jsonl') if dlp else None,
            'av_config': aconf if av else None,
            'av_eicar': eicar if av else None,
            'av_log': av.stderr_path if av else None,
            'archive_config': jconf if journal else None,
            'journal_log': journal.stderr_path if journal else None,
            'audit_config': audit.config if audit else None,
            'audit_log_dir': audit.log_dir if audit else None,
            'recall_config': rconf if recall else None,
            'recall_log': recall.stderr_path if recall else None,
            'otp_config': pam_conf,
            'pam_service': PAM_SERVICE_FILE if pam_conf else None,
            'crypt_keys': crypt['mailkeep_crypt_keys'] if crypt else None,
            'crypt_server_key': crypt['mailkeep_crypt_server_key'] if crypt else None,
            'crypt_escrow_key': crypt['mailkeep_crypt_escrow_key'] if crypt else None,
            'crypt_escrow_private': escrow_pem if crypt else None,
            'alice_maildir': st.dovecot.mail_dir('alice@example.com'),
        }
        with open(INFO + '.tmp', 'w') as f:
            json.dump(info, f, indent=1)
        os.replace(INFO + '.tmp', INFO)
        while not stop:
            for d in [block] + daemons:    # keep the milters up, as systemd would
                if not d.running:
                    d.start()
            time.sleep(1)
    finally:
        for d in daemons:
            d.stop()
        if block:
            block.stop()
        st.stop()
        pam_service_remove()
        for p in (INFO, PIDFILE):
            if os.path.exists(p):
                os.unlink(p)


def running_pid():
    try:
        pid = int(open(PIDFILE).read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def dlp_help(i):
    if not i.get('dlp_config'):
        return ''
    p = i['ports']
    c = i['dlp_config']
    return f"""  # mailkeep-dlp (milter inet:{p['dlp']}@127.0.0.1, rules in {c}):
  # a national ID going out is quarantined; look, then release it
  swaks -s 127.0.0.1:{i['smtp_port']} -au alice@example.com -ap mailkeep -f alice@example.com \\
        -t partner@partner.example --body '身分證字號 A123456789'
  build/tools/mailkeep -c {c} quarantine list
  build/tools/mailkeep -c {c} quarantine release QUEUE_ID
  # a card number going out is refused; the same inside warns the sender
  swaks -s 127.0.0.1:{i['smtp_port']} -au alice@example.com -ap mailkeep -f alice@example.com \\
        -t partner@partner.example --body 'card number 4111 1111 1111 1111'
  # what the detectors see in a file or message
  build/tools/mailkeep -c {c} dlp scan -d outbound FILE
  # incidents: {i['dlp_incidents']}
"""


def av_help(i):
    if not i.get('av_config'):
        return ''
    p = i['ports']
    return f"""  # mailkeep-av (milter inet:{p['av']}@127.0.0.1, {i['av_config']}):
  # the EICAR test file is refused coming in
  swaks -s 127.0.0.1:{i['smtp_port']} --xclient-addr 203.0.113.5 -f x@good.example \\
        -t alice@example.com --attach {i['av_eicar']}
  # add a signature (sigtool --md5 FILE >> .../db/local.hdb): it is live within seconds
"""


def archive_help(i):
    if not i.get('archive_config'):
        return ''
    c = i['archive_config']
    return f"""  # the archive (mailkeep-journal inet:{i['ports']['journal']}@127.0.0.1 captures every
  # message; an ingest process archives it within a second):
  build/tools/mailkeep -c {c} archive search 個資
  build/tools/mailkeep -c {c} archive search from:alice date:2026 has:attachment
  build/tools/mailkeep -c {c} archive show ID
  build/tools/mailkeep -c {c} archive verify
  build/tools/mailkeep -c {c} archive export -f mbox -o /tmp/export.mbox from:alice
"""


def mkaudit_binary():
    return os.path.join(BUILDDIR, 'audit', 'mailkeep-auditd')


def audit_help(i):
    if not i.get('audit_config'):
        return ''
    c = i['audit_config']
    return f"""  # the Dovecot plugins (mailkeep_audit, mailkeep_usage) and mailkeep-auditd:
  # every IMAP/POP3/doveadm operation lands in a hash-chained log ({i['audit_log_dir']})
  build/tools/mailkeep -c {c} audit search -u alice@example.com -s 1h
  build/tools/mailkeep -c {c} audit search -o read,expunge -a
  build/tools/mailkeep -c {c} audit verify
  # accounts by last login and by size; purge old mail (dry run first)
  build/tools/mailkeep -c {c} usage report -s size
  build/tools/mailkeep -c {c} usage report -i 30 -d example.org
  build/tools/mailkeep -c {c} usage purge -u bob@example.com -m Trash -b 30d -n
"""


def recall_help(i):
    if not i.get('recall_config'):
        return ''
    c = i['recall_config']
    return f"""  # message recall (mailkeep-recall inet:{i['ports']['recall']}@127.0.0.1): alice sends to
  # erin and to the outside; sales mail to the outside waits 60 s (undo-send)
  swaks -s 127.0.0.1:{i['smtp_port']} -a PLAIN -au alice@example.com -ap mailkeep \\
      -f alice@example.com -t erin@example.com,partner@external.example \\
      --header 'Message-Id: <oops1@example.com>'
  build/tools/mailkeep -c {c} recall list -a alice@example.com
  # within the minute the whole message is still held: both recalled from the
  # queue; after it, erin's copy goes from her INBOX (a notice stands in its
  # place) unless she read it, and the outside one is "external, already sent"
  build/tools/mailkeep -c {c} recall -a alice@example.com '<oops1@example.com>'
  build/tools/mailkeep -c {i['audit_config']} audit search -o recall
"""


def otp_help(i):
    if not i.get('otp_config'):
        return ''
    c = i['otp_config']
    return f"""  # two-factor login (pam_mailkeep; Dovecot's passdb is PAM, {i['pam_service']}):
  # dave@example.com logs in over IMAP (and POP3, SMTP AUTH) with the password
  # "mailkeep" followed by the current code of
  #     oathtool --totp -b {OTP_SECRET}
  curl -s -u "dave@example.com:mailkeep$(oathtool --totp -b {OTP_SECRET})" \\
      'imap://127.0.0.1:{i['ports']['imap']}/'
  # "mailkeep" alone is refused; a code is good once (the next comes within 30 s);
  # five failures lock the account for 15 minutes
  # {OTP_SECRET} is a demo secret, fixed so that you can compute dave's codes;
  # real users are enrolled with a random one (an authenticator app scans the QR code):
  build/tools/mailkeep -c {c} otp enroll USER
  build/tools/mailkeep -c {c} otp list
  # a password for a client that cannot add a code; unlock after failures
  build/tools/mailkeep -c {c} otp apppass add -s '*' -l laptop dave@example.com
  build/tools/mailkeep -c {c} otp unlock dave@example.com
  # dave's recovery codes: {os.path.join(os.path.dirname(c), 'dave.recovery')}
"""


def crypt_help(i):
    if not i.get('crypt_keys'):
        return ''
    m = i['alice_maildir']
    return f"""  # At-rest encryption (the Dovecot plugin mailkeep_crypt): every message saved
  # from now on is encrypted on disk with a key of its own, wrapped for the user's
  # key and the escrow key; IMAP and POP3 read it in clear. The keys:
  #   server key (seals the users' private keys)  {i['crypt_server_key']}
  #   user keys, one file per address              {i['crypt_keys']}/
  #   escrow public key                            {i['crypt_escrow_key']}
  #   escrow private key (root's; a real site keeps it off the mail servers)
  #                                                {i['crypt_escrow_private']}
  swaks -s 127.0.0.1:{i['smtp_port']} --xclient-addr 203.0.113.5 -f friend@good.example \\
        -t alice@example.com --header 'Subject: at rest' --body 'kept encrypted on disk'
  # IMAP reads it in clear
  uid=$(curl -s -u alice@example.com:mailkeep 'imap://127.0.0.1:{i['ports']['imap']}/INBOX' \\
        -X 'UID SEARCH SUBJECT "at rest"' | awk '{{print $NF}}' | tr -d '\\r')
  curl -s -u alice@example.com:mailkeep "imap://127.0.0.1:{i['ports']['imap']}/INBOX;UID=$uid"
  # on disk the newest file starts with the format's magic, \\0MKCRYPT, and the
  # text is nowhere in the Maildir (mail from before the plugin stays as it was)
  head -c 8 "$(ls -t {m}/new/* {m}/cur/* 2>/dev/null | head -1)" | od -c
  grep -rl 'kept encrypted on disk' {m} || echo 'not in clear on disk'
"""


def show():
    i = json.load(open(INFO))
    p = i['ports']
    two_factor = ';\n         dave gives a code too (below)' if i.get('otp_config') else ''
    print(f"""
Mailkeep sandbox is up (state in {i['state']})

  SMTP (Postfix + mailkeep-block)  127.0.0.1:{i['smtp_port']}
  IMAP / POP3 (Dovecot)            127.0.0.1:{p['imap']} / 127.0.0.1:{p['pop3']}
  LDAP (demo directory)            {i['ldap_uri']}  base dc=mailkeep,dc=test
  mailkeep-block milter            inet:{p['block']}@127.0.0.1
  the "Internet" (smtp-sink)       127.0.0.1:{p['sink']}, mail dumped in {i['sink_dump']}

  Users: alice, bob, carol, dave, erin, frank, grace, admin @example.com;
         wei, mei, jun, hsu @example.org. Every password is "mailkeep"{two_factor}.

Try it:
  # a message that gets through, then read it over IMAP
  swaks -s 127.0.0.1:{i['smtp_port']} --xclient-addr 203.0.113.5 -f friend@good.example -t alice@example.com
  curl -s -u alice@example.com:mailkeep 'imap://127.0.0.1:{p['imap']}/INBOX;UID=1'
  # a client on the block list (192.0.2.0/24), refused at connect
  swaks -s 127.0.0.1:{i['smtp_port']} --xclient-addr 192.0.2.9 -f x@good.example -t alice@example.com
  # a blocked sender domain, refused at MAIL FROM
  swaks -s 127.0.0.1:{i['smtp_port']} --xclient-addr 203.0.113.5 -f x@spam.example -t alice@example.com
  # alice's personal block list (LDAP mailkeepBlockedSender) refuses for her only
  swaks -s 127.0.0.1:{i['smtp_port']} --xclient-addr 203.0.113.5 -f spammer@bad.example -t alice@example.com
  # bob tags instead of refusing: the message lands in his Junk folder
  swaks -s 127.0.0.1:{i['smtp_port']} --xclient-addr 203.0.113.5 -f deals@promo.example -t bob@example.com
  curl -s -u bob@example.com:mailkeep 'imap://127.0.0.1:{p['imap']}/Junk;UID=1'

{dlp_help(i)}{av_help(i)}{archive_help(i)}{audit_help(i)}{recall_help(i)}{otp_help(i)}{crypt_help(i)}
  Edit a list (it reloads within seconds): {i['block_lists']}/bad-senders
  Reload the configuration: kill -USR1 {i['block_pid']}   ({i['block_config']})
  Logs: {i['block_log']}
        {i['maillog']}
  Stop: contrib/sandbox/mailkeep-sandbox down
""")


def main(argv):
    cmd = argv[0] if argv else 'status'
    if cmd == 'serve':
        serve()
        return 0
    if cmd == 'start':
        if running_pid():
            show()
            return 0
        os.makedirs(STATE, exist_ok=True)
        if os.path.exists(INFO):
            os.unlink(INFO)
        log = open(os.path.join(STATE, 'supervisor.log'), 'ab')
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), 'serve'],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ, MK_BUILDDIR=BUILDDIR))
        with open(PIDFILE, 'w') as f:
            f.write('%d\n' % proc.pid)
        deadline = time.monotonic() + 120
        while not os.path.exists(INFO):
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.stderr.write('the sandbox did not start; see %s/supervisor.log:\n' % STATE)
                sys.stderr.write(open(os.path.join(STATE, 'supervisor.log')).read()[-3000:])
                return 1
            time.sleep(0.3)
        show()
        return 0
    if cmd == 'stop':
        pid = running_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            # the milters take some seconds each; the supervisor removes the
            # PAM service file last, after Dovecot
            for _ in range(1200):
                if running_pid() is None:
                    break
                time.sleep(0.1)
        pid = running_pid()
        if pid is not None:
            sys.stderr.write('mailkeep-sandbox: the supervisor (pid %d) is still stopping\n'
                             % pid)
            return 1
        pam_service_remove()                # a supervisor that died left it
        print('Mailkeep sandbox stopped.')
        return 0
    if cmd == 'status':
        if running_pid() and os.path.exists(INFO):
            show()
            return 0
        print('Mailkeep sandbox is not running.')
        return 3
    sys.stderr.write(__doc__)
    return 64


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
