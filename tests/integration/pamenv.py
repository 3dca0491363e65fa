"""The stack of the pam_mailkeep tests: slapd (with the ppolicy overlay),
pam_mailkeep.so with a mailkeep.conf of its own, its second-factor store,
PAM service files run through pam_wrapper and libpamtest, and Dovecot
authenticating IMAP logins through PAM (passdb pam) with the module."""
import base64
import hashlib
import hmac
import json
import os
import struct
import subprocess
import time

import mkstack
from milterenv import BUILDDIR, MAILKEEP, write

PAM_MODULE = os.path.join(BUILDDIR, 'pam', 'pam_mailkeep.so')
PAM_MATRIX = '/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so'
PAM_SET_ITEMS = '/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_set_items.so'
PAMRUN = os.path.join(os.path.dirname(mkstack.__file__), 'pamrun.py')
PASSWORD = mkstack.DEMO_PASSWORD

# PAM return codes (security/_pam_types.h)
PAM_SUCCESS = 0
PAM_PERM_DENIED = 6
PAM_AUTH_ERR = 7
PAM_AUTHINFO_UNAVAIL = 9
PAM_USER_UNKNOWN = 10
PAM_MAXTRIES = 11
PAM_NEW_AUTHTOK_REQD = 12
PAM_AUTHTOK_ERR = 20


def otp_code(secret, counter, digits=6, algo='sha1'):
    """RFC 4226 dynamic truncation, written independently of liboath."""
    mac = hmac.new(secret, struct.pack('>Q', counter), getattr(hashlib, algo)).digest()
    off = mac[-1] & 15
    value = struct.unpack('>I', mac[off:off + 4])[0] & 0x7fffffff
    return str(value % 10 ** digits).zfill(digits)


def totp(secret, digits=6, algo='sha1', period=30, at=None):
    return otp_code(secret, int((time.time() if at is None else at) // period), digits, algo)


def wait_fresh_step(period=30, margin=3):
    """Sleep past a step boundary when one is near, so a code stays good."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.2)


class PamStack:
    def __init__(self, workdir, extra='', ppolicy=True):
        self.dir = workdir
        self.slapd = mkstack.Slapd(workdir, ppolicy=ppolicy)
        self.config = os.path.join(workdir, 'mailkeep.conf')
        self.store = os.path.join(workdir, 'otp')
        self.key = os.path.join(workdir, 'otp.key')
        self.services = os.path.join(workdir, 'pam.d')
        self.passdb = os.path.join(workdir, 'passdb')
        self.extra = extra
        self.dovecot = None

    def __enter__(self):
        self.slapd.start()
        os.makedirs(self.store, mode=0o700, exist_ok=True)
        os.makedirs(self.services, exist_ok=True)
        self.write_config()
        return self

    def __exit__(self, *exc):
        if self.dovecot is not None:
            self.dovecot.stop()
        self.slapd.stop()

    def write_config(self, extra=None):
        if extra is not None:
            self.extra = extra
        s = self.slapd
        write(self.config,
              '[global]\nlog = stderr\ndirectory = ldap\n'
              '[ldap]\nuri = %s\nbase = %s\nbind_dn = %s\nbind_password = %s\n'
              '[otp]\nstore = %s\nkey_file = %s\ntrusted_networks = 127.0.0.2/32\n'
              '[password]\n%s'
              % (s.uri, s.base_dn, s.service_dn, s.service_pw, self.store, self.key,
                 self.extra))

    # ---- PAM through pam_wrapper

    def service(self, name, auth=None, account=None, password=None):
        """Write a service file; each argument is a list of 'control module args'."""
        lines = ['auth required %s' % PAM_SET_ITEMS]
        for kind, rows in (('auth', auth), ('account', account), ('password', password)):
            for row in rows or []:
                lines.append('%s %s' % (kind, row))
        write(os.path.join(self.services, name), '\n'.join(lines) + '\n')

    def mod(self, args=''):
        return '%s config=%s %s' % (PAM_MODULE, self.config, args)

    def matrix(self, args=''):
        return '%s passdb=%s %s' % (PAM_MATRIX, self.passdb, args)

    def pam(self, user, service, ops=('authenticate',), echo_off=(), rhost='127.0.0.1'):
        env = dict(os.environ, LD_PRELOAD='libpam_wrapper.so', PAM_WRAPPER='1',
                   PAM_WRAPPER_SERVICE_DIR=self.services, PAM_RHOST=rhost or '')
        req = {'user': user, 'service': service, 'ops': list(ops), 'echo_off': list(echo_off)}
        cp = subprocess.run(['/usr/bin/python3', PAMRUN], input=json.dumps(req),
                            capture_output=True, text=True, timeout=60, env=env)
        if cp.returncode != 0:
            raise AssertionError('pamrun failed: %s' % cp.stderr)
        out = json.loads(cp.stdout)
        out['log'] = cp.stderr
        return out

    # ---- the administration command

    def mailkeep(self, *args, input=None, check=False):
        return subprocess.run([MAILKEEP, '-c', self.config] + list(args), input=input,
                              capture_output=True, text=True, timeout=60, check=check)

    def enroll(self, user, *opts, secret=None):
        """Enrol and confirm a token; returns (secret bytes, recovery codes)."""
        if secret is None:
            secret = os.urandom(20)
        cp = self.mailkeep('otp', 'enroll', '-K', *opts, user,
                           input=base64.b32encode(secret).decode() + '\n', check=True)
        assert 'otpauth://' in cp.stdout
        digits = int(next((o[2:] for o in opts if o.startswith('-d')), '6') or 6)
        algo = next((o[2:] for o in opts if o.startswith('-a')), 'sha1').lower() or 'sha1'
        if '-thotp' in opts:
            code = otp_code(secret, 0, digits)
        else:
            # the previous step's code (inside the window): confirming
            # spends its step, and the current code stays good to log in
            code = totp(secret, digits, algo, at=time.time() - 30)
        cp = self.mailkeep('otp', 'confirm', user, code)
        assert cp.returncode == 0, cp.stderr
        recovery = [l.strip() for l in cp.stdout.splitlines()
                    if l.startswith('  ') and '-' in l and len(l.strip()) == 9]
        return secret, recovery

    def record(self, user):
        with open(os.path.join(self.store, user)) as f:
            return f.read()

    # ---- Dovecot authenticating through PAM

    def start_dovecot(self, service_name='dovecot'):
        pw = 'LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=%s' % self.services
        self.dovecot = mkstack.Dovecot(self.dir, slapd=self.slapd,
                                       passdb='  driver = pam\n  args = failure_show_msg=yes %s'
                                              % service_name,
                                       extra_conf='import_environment = TZ %s\n' % pw)
        self.dovecot.start()
        return self.dovecot
