"""mkstack -- throwaway Postfix + Dovecot + slapd stacks for Mailkeep tests.

Python 3, standard library only.  Everything listens on loopback only
(127.0.0.1) on free ports and lives in a private work directory made with
``tempfile.mkdtemp(prefix='mk-')``.  The test process runs as root; the
servers drop privileges themselves (slapd -> openldap, Postfix -> postfix,
Dovecot -> dovecot/dovenull/mail).

Typical use::

    from mkstack import Stack, send
    with Stack() as st:
        st.start(smtpd_milters='inet:127.0.0.1:%d' % port)
        r = send('127.0.0.1', st.postfix.smtp_port, 'x@client.example',
                 ['alice@example.com'])
        assert r.ok
        st.wait_for_message('alice@example.com', b'Subject:')

Teardown: every server object has an idempotent ``stop()``; all started
objects are also registered with an ``atexit`` hook.  Processes are only
ever killed by pid (the server's own pid and the descendants it had when we
stopped it, matched by start time), never by name.

Set ``MK_KEEP=1`` to keep work directories after a clean stop (their path is
printed on stderr).  ``python3 mkstack.py`` starts a stack and waits, for
manual poking.
"""

import atexit
import base64
import contextlib
import email.utils
import imaplib
import os
import poplib
import pwd
import grp
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
LDAP_CONTRIB = os.path.join(REPO_ROOT, 'contrib', 'ldap')

LOOPBACK = '127.0.0.1'
DEMO_PASSWORD = 'mailkeep'

__all__ = [
    'free_port', 'wait_port', 'port_listening', 'Slapd', 'Dovecot', 'Postfix',
    'SmtpSink',
    'Daemon', 'SendResult', 'send', 'imap_messages', 'wait_for_message',
    'pop3_messages', 'Stack', 'make_workdir', 'parse_ldif', 'build_message',
    'DEMO_USERS',
]

# The twelve demo users of contrib/ldap/demo.ldif.
DEMO_USERS = [
    'alice@example.com', 'bob@example.com', 'carol@example.com',
    'dave@example.com', 'erin@example.com', 'frank@example.com',
    'grace@example.com', 'admin@example.com',
    'wei@example.org', 'mei@example.org', 'jun@example.org',
    'hsu@example.org',
]

# --------------------------------------------------------------------------
# generic helpers


def _keep_workdirs():
    return os.environ.get('MK_KEEP', '') not in ('', '0', 'no', 'false')


def make_workdir(prefix='mk-'):
    """mkdtemp() that daemons running as other users can traverse."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


def _remove_workdir(path):
    if not path or not os.path.isdir(path):
        return
    if _keep_workdirs():
        sys.stderr.write('mkstack: keeping work directory %s\n' % path)
        return
    shutil.rmtree(path, ignore_errors=True)


_port_lock = threading.Lock()
_recent_ports = set()


def free_port():
    """A currently free TCP port on 127.0.0.1 (not handed out twice by us)."""
    with _port_lock:
        for _ in range(200):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((LOOPBACK, 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _recent_ports:
                _recent_ports.add(port)
                return port
        raise RuntimeError('no free port found')


def _can_connect(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _can_connect_unix(path, timeout=0.5):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def port_listening(port):
    """True if some socket on this host is in LISTEN state on TCP port.

    Reads /proc/net/tcp{,6} instead of connecting, so servers (and milters
    behind Postfix) do not see a spurious probe connection."""
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == '0A' and \
                            int(fields[1].rsplit(':', 1)[1], 16) == port:
                        return True
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return False


def wait_port(port, host=LOOPBACK, timeout=15, alive=None, connect=False):
    """Wait until TCP port is listening (or, with connect=True, until
    host:port accepts a connection).

    ``alive`` is an optional callable; if it returns False the wait is
    aborted early (the server died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_listening(port) and (not connect or _can_connect(host, port)):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.05)
    return False


def _uid(name):
    return pwd.getpwnam(name).pw_uid


def _gid(name):
    return grp.getgrnam(name).gr_gid


def _chown_r(path, user, group):
    uid, gid = _uid(user), _gid(group)
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), uid, gid)


def _write(path, text, mode=0o644):
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    os.chmod(path, mode)


def _tail(path, n=40):
    try:
        with open(path, 'rb') as f:
            lines = f.read().decode('utf-8', 'replace').splitlines()
        return '\n'.join(lines[-n:])
    except OSError:
        return ''


def _run(argv, check=True, input=None, timeout=60, env=None):
    """subprocess.run with captured text output; raises with output on error."""
    cp = subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                        env=env)
    if check and cp.returncode != 0:
        raise RuntimeError('%s failed (rc=%d)\nstdout: %s\nstderr: %s' % (
            ' '.join(argv), cp.returncode,
            cp.stdout.decode('utf-8', 'replace'),
            cp.stderr.decode('utf-8', 'replace')))
    return cp


# ---- process bookkeeping (by pid, never by name)

def _proc_stat(pid):
    """(ppid, starttime, state) of pid, or None if gone."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            data = f.read().decode('ascii', 'replace')
    except OSError:
        return None
    rest = data[data.rfind(')') + 2:].split()
    # rest[0]=state rest[1]=ppid ... rest[19]=starttime
    return int(rest[1]), int(rest[19]), rest[0]


def _pid_alive(pid, starttime=None):
    st = _proc_stat(pid)
    if st is None or st[2] in ('Z', 'X'):
        return False
    return starttime is None or st[1] == starttime


def _descendants(pid):
    """[(pid, starttime)] of all live descendants of pid."""
    children = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        st = _proc_stat(int(d))
        if st is None:
            continue
        children.setdefault(st[0], []).append((int(d), st[1]))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c[0])
    return out


def _signal(pid, sig, starttime=None):
    if pid is None or pid <= 1:
        return
    if starttime is not None and not _pid_alive(pid, starttime):
        return
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pids, timeout):
    """Wait until all (pid, starttime) are gone; returns survivors."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [(p, s) for (p, s) in pids if _pid_alive(p, s)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _terminate_tree(pid, starttime=None, sig=signal.SIGTERM, timeout=10,
                    graceful=None, popen=None):
    """Stop pid and everything it had spawned.

    ``graceful`` is an optional callable run instead of sending ``sig``
    (e.g. 'postfix stop').  Survivors are SIGKILLed.  The descendants are
    recorded before the stop and matched by start time afterwards, so an
    unrelated process that reused a pid is never touched."""
    if pid is None:
        return
    if starttime is None:
        st = _proc_stat(pid)
        starttime = st[1] if st else None
    tree = [(pid, starttime)] + _descendants(pid)
    if graceful is not None:
        try:
            graceful()
        except Exception:
            pass
    elif sig == signal.SIGKILL:
        for p, s in tree:
            _signal(p, sig, s)
    else:
        _signal(pid, sig, starttime)
    survivors = _wait_gone([tree[0]], timeout)
    if survivors:
        _signal(pid, signal.SIGKILL, starttime)
    # Give children a moment to notice their master has gone, then kill.
    survivors = _wait_gone(tree[1:], 2)
    for p, s in survivors:
        _signal(p, signal.SIGKILL, s)
    _wait_gone(tree, 5)
    if popen is not None:
        try:
            popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    # Orphans (e.g. the daemonized Postfix master) are reaped by init; wait
    # for that too, so that a pgrep right after stop() finds no zombies.
    _wait_reaped(tree, 5)


def _wait_reaped(pids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = []
        for p, s in pids:
            st = _proc_stat(p)
            if st is not None and (s is None or st[1] == s):
                left.append(p)
        if not left:
            return True
        time.sleep(0.05)
    return False


def _spawn(argv, log_path, header=None, env=None, cwd=None):
    """Start argv in its own session (so signals to our process group do not
    reach it), stdin from /dev/null and stdout+stderr appended to log_path
    (after the optional header line, bytes).  Returns (popen, starttime);
    the start time lets _terminate_tree tell it from a later pid reuse."""
    log = open(log_path, 'ab')
    try:
        if header is not None:
            log.write(header)
            log.flush()
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, cwd=cwd,
            start_new_session=True)
    finally:
        log.close()
    st = _proc_stat(proc.pid)
    return proc, (st[1] if st else None)


_LIVE = []
_LIVE_LOCK = threading.Lock()


def _register(obj):
    with _LIVE_LOCK:
        if obj not in _LIVE:
            _LIVE.append(obj)


def _unregister(obj):
    with _LIVE_LOCK:
        if obj in _LIVE:
            _LIVE.remove(obj)


@contextlib.contextmanager
def _stop_on_error(obj):
    """Run the body (a start); if it raises, obj.stop() (idempotent, copes
    with a half-started object) and re-raise."""
    try:
        yield
    except Exception:
        obj.stop()
        raise


_ATEXIT_DIRS = []
_sigterm_installed = False


@atexit.register
def _atexit_cleanup():
    with _LIVE_LOCK:
        objs = list(reversed(_LIVE))
    for obj in objs:
        try:
            obj.stop()
        except Exception as e:  # pragma: no cover - best effort
            sys.stderr.write('mkstack: atexit stop of %r failed: %s\n' % (obj, e))
    for d in _ATEXIT_DIRS:
        _remove_workdir(d)


def _sigterm(signum, frame):
    # Turn SIGTERM (e.g. a CI timeout) into SystemExit so that context
    # managers, fixture finalizers and the atexit hook still run.
    raise SystemExit(128 + signum)


def _install_sigterm_handler():
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_installed = True
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _sigterm)
    except (ValueError, OSError):
        pass


class _Process:
    """A foreground child process we own (self.proc, self._starttime)."""

    def _spawn(self, argv, log_path, **kw):
        self.proc, self._starttime = _spawn(argv, log_path, **kw)

    def _proc_alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _terminate(self, sig=signal.SIGTERM, timeout=10):
        """Stop the process tree (if any); returns the Popen it stopped."""
        proc = self.proc
        if proc is not None:
            _terminate_tree(proc.pid, self._starttime, sig=sig,
                            timeout=timeout, popen=proc)
            self.proc = None
        return proc

    def __exit__(self, *exc):
        self.stop()
        return False


class _Component(_Process):
    """Common bits: own subdirectory of a work dir, registry, idempotence.

    Subclasses implement _start(); start() cleans up if it fails."""

    name = 'component'

    def __init__(self, workdir, subdir):
        self._own_workdir = workdir is None
        self.workdir = workdir if workdir is not None else make_workdir()
        self.dir = os.path.join(self.workdir, subdir)
        self.started = False
        self.proc = None
        self._starttime = None

    def __enter__(self):
        if not self.started:
            self.start()
        return self

    def start(self):
        if self.started:
            return self
        self._prepare()
        with _stop_on_error(self):
            self._start()
        return self

    def _launch(self, argv, log_path):
        """Spawn the server in the foreground; from now on stop() has
        something to stop."""
        self._spawn(argv, log_path)
        self.started = True

    def _wait_ready(self, ports, logs, alive=None):
        """Wait for each port to listen; raise with the logs' tails if one
        does not (or the server died)."""
        alive = alive or self._proc_alive
        for port in ports:
            if not wait_port(port, alive=alive):
                raise RuntimeError('%s did not start:\n%s' % (
                    self.name, '\n'.join(_tail(p) for p in logs)))

    def stop(self):
        self._terminate()
        self._stopped()

    def _prepare(self):
        _register(self)
        _install_sigterm_handler()
        if not os.path.isdir(self.workdir):
            os.makedirs(self.workdir)
            os.chmod(self.workdir, 0o755)

    def _stopped(self):
        self.started = False
        _unregister(self)
        if self._own_workdir:
            _remove_workdir(self.workdir)


# --------------------------------------------------------------------------
# LDIF parsing (enough for ldapsearch -LLL output)


def parse_ldif(text):
    """Parse LDIF text into a list of (dn, {attr_lower: [str values]})."""
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    entries = []
    lines = []
    for line in text.splitlines():
        if line.startswith(' ') and lines:
            lines[-1] += line[1:]
        else:
            lines.append(line)
    dn, attrs = None, {}
    for line in lines + ['']:
        if line.startswith('#'):
            continue
        if not line.strip():
            if dn is not None:
                entries.append((dn, attrs))
            dn, attrs = None, {}
            continue
        if '::' in line and line.index('::') <= line.index(':'):
            key, val = line.split('::', 1)
            val = base64.b64decode(val.strip()).decode('utf-8', 'replace')
        else:
            key, val = line.split(':', 1)
            val = val[1:] if val.startswith(' ') else val
        if key.lower() == 'dn':
            dn = val
        else:
            attrs.setdefault(key.lower(), []).append(val)
    return entries


# --------------------------------------------------------------------------
# slapd


class Slapd(_Component):
    """slapd with a slapd.conf, mdb backend and the Mailkeep demo data."""

    name = 'slapd'
    base_dn = 'dc=mailkeep,dc=test'
    admin_dn = 'cn=admin,dc=mailkeep,dc=test'
    admin_pw = 'admin-secret'
    service_dn = 'cn=mailkeep,ou=services,dc=mailkeep,dc=test'
    service_pw = 'service-secret'
    people_dn = 'ou=people,dc=mailkeep,dc=test'

    def __init__(self, workdir=None, port=None, demo_ldif=None, schema=None, ppolicy=False):
        """ppolicy: load the password policy overlay, with a default policy
        (cn=default,ou=policies) whose pwdMustChange sets pwdReset when an
        administrator sets a password."""
        super().__init__(workdir, 'slapd')
        self.ppolicy = ppolicy
        self.port = port or free_port()
        self.host = LOOPBACK
        self.uri = 'ldap://%s:%d' % (self.host, self.port)
        self.conf_path = os.path.join(self.dir, 'slapd.conf')
        self.data_dir = os.path.join(self.dir, 'data')
        self.log_path = os.path.join(self.dir, 'slapd.log')
        self.demo_ldif = demo_ldif or os.path.join(LDAP_CONTRIB, 'demo.ldif')
        self.schema = schema or os.path.join(LDAP_CONTRIB, 'mailkeep.schema')

    def _conf(self):
        inc = ''.join('include /etc/ldap/schema/%s.schema\n' % s
                      for s in ('core', 'cosine', 'inetorgperson', 'nis'))
        return f"""# generated by mkstack
{inc}include {self.schema}

pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
{"moduleload ppolicy" if self.ppolicy else ""}
loglevel stats
sizelimit 1000

database mdb
maxsize 67108864
suffix "{self.base_dn}"
rootdn "{self.admin_dn}"
rootpw {self.admin_pw}
directory {self.data_dir}
index objectClass eq
index uid,mail eq,sub
index member eq
index associatedDomain eq
{self._ppolicy_conf()}
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by dn.exact="{self.service_dn}" read
    by self read
    by users read
    by * none
"""

    def _ppolicy_conf(self):
        if not self.ppolicy:
            return ''
        return 'overlay ppolicy\nppolicy_default "cn=default,ou=policies,%s"\n' % self.base_dn

    POLICY_LDIF = """dn: ou=policies,{base}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,{base}
objectClass: device
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdMustChange: TRUE
pwdAllowUserChange: TRUE
"""

    def _start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        _write(self.conf_path, self._conf(), 0o640)
        os.chown(self.conf_path, 0, _gid('openldap'))
        if not os.path.exists(os.path.join(self.data_dir, 'data.mdb')):
            # first start; a restart keeps the data (and any modify())
            _run(['slapadd', '-q', '-f', self.conf_path, '-l', self.demo_ldif])
        _chown_r(self.dir, 'openldap', 'openldap')
        # -d keeps slapd in the foreground, so we own its pid.
        self._launch(['slapd', '-d', 'stats', '-u', 'openldap', '-g', 'openldap',
                      '-f', self.conf_path, '-h', self.uri + '/'], self.log_path)
        self._wait_ready([self.port], [self.log_path])
        if self.ppolicy and not self.search('(cn=default)', ['cn'],
                                            base='dc=mailkeep,dc=test'):
            self.add(self.POLICY_LDIF.format(base=self.base_dn))

    # ---- client helpers (ldap-utils)

    def _auth(self, bind_dn=None, bind_pw=None):
        if bind_dn is None:
            bind_dn, bind_pw = self.admin_dn, self.admin_pw
        return ['-x', '-H', self.uri, '-D', bind_dn, '-w', bind_pw]

    def modify(self, ldif_text, bind_dn=None, bind_pw=None):
        """ldapmodify as admin (or the given DN); raises on failure."""
        return _run(['ldapmodify'] + self._auth(bind_dn, bind_pw),
                    input=ldif_text.encode('utf-8'))

    def add(self, ldif_text):
        """ldapadd as admin; raises on failure."""
        return _run(['ldapadd'] + self._auth(), input=ldif_text.encode('utf-8'))

    def search(self, filterstr='(objectClass=*)', attrs=(), base=None,
               scope='sub', bind_dn=None, bind_pw=None):
        """ldapsearch; returns parse_ldif() entries: [(dn, {attr: [values]})]."""
        cp = _run(['ldapsearch', '-LLL', '-o', 'ldif-wrap=no'] +
                  self._auth(bind_dn, bind_pw) +
                  ['-b', base or self.base_dn, '-s', scope, filterstr] +
                  list(attrs))
        return parse_ldif(cp.stdout)

    def user_dn(self, local_part):
        return 'uid=%s,%s' % (local_part, self.people_dn)


# --------------------------------------------------------------------------
# Dovecot

# The Sieve rule Mailkeep ships, so the tests exercise exactly what sites install.
_SIEVE_BEFORE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                             'contrib', 'dovecot', 'mailkeep-junk.sieve')


class Dovecot(_Component):
    """Dovecot (imap, pop3, lmtp + sieve, auth for Postfix) against Slapd."""

    name = 'dovecot'

    def __init__(self, workdir=None, slapd=None, mail_user='mail',
                 mail_plugins='', plugin_modules=(), plugin_settings=None,
                 extra_conf='', passdb=None, mail_location='maildir:~/Maildir',
                 user_attrs=''):
        """mail_plugins: added to mail_plugins for every protocol;
        plugin_modules: paths of our own plugin .so files, loaded from a
        module directory of links next to Dovecot's own modules;
        plugin_settings: {name: value} for the plugin {} section;
        extra_conf: appended to dovecot.conf; passdb: the passdb { } block's
        contents, instead of LDAP with auth_bind; mail_location: Dovecot's
        (sdbox:~/sdbox, for example); user_attrs: more of the LDAP userdb's
        user_attrs (", mailkeepCryptProtect=mailkeep_crypt_protect")."""
        super().__init__(workdir, 'dovecot')
        self.mail_plugins = mail_plugins
        self.plugin_modules = list(plugin_modules)
        self.plugin_settings = dict(plugin_settings or {})
        self.extra_conf = extra_conf
        self.passdb = passdb
        self.mail_location = mail_location
        self.user_attrs = user_attrs
        self.module_dir = os.path.join(self.dir, 'modules')
        if slapd is None:
            raise ValueError('Dovecot needs a Slapd')
        self.slapd = slapd
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.lmtp_port = free_port()
        self.auth_port = free_port()
        self.host = LOOPBACK
        self.instance_name = 'mk-dovecot-%d' % self.imap_port
        self.base_dir = os.path.join(self.dir, 'run')
        self.state_dir = os.path.join(self.dir, 'state')
        self.mail_root = os.path.join(self.dir, 'mail')
        self.sieve_dir = os.path.join(self.dir, 'sieve')
        self.sieve_before = os.path.join(self.sieve_dir, 'mailkeep-blocked.sieve')
        self.conf_path = os.path.join(self.dir, 'dovecot.conf')
        self.log_path = os.path.join(self.dir, 'dovecot.log')
        self.stderr_path = os.path.join(self.dir, 'dovecot.stderr')
        self.mail_user = mail_user
        self.mail_uid = _uid(mail_user)
        self.mail_gid = pwd.getpwnam(mail_user).pw_gid

    def _ldap_conf(self, kind):
        s = self.slapd
        common = f"""# generated by mkstack ({kind})
uris = {s.uri}
ldap_version = 3
dn = {s.service_dn}
dnpass = {s.service_pw}
base = {s.people_dn}
scope = subtree
deref = never
"""
        if kind == 'passdb':
            return common + """auth_bind = yes
pass_filter = (&(objectClass=inetOrgPerson)(mail=%u))
pass_attrs = mail=user
"""
        return common + f"""user_filter = (&(objectClass=inetOrgPerson)(mail=%u))
user_attrs = =uid={self.mail_uid}, =gid={self.mail_gid}, =home={self.mail_root}/%d/%n{self.user_attrs}
iterate_filter = (&(objectClass=inetOrgPerson)(mail=*))
iterate_attrs = mail=user
"""

    def _conf(self):
        return f"""# generated by mkstack
instance_name = {self.instance_name}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
protocols = imap pop3 lmtp
listen = {self.host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Lu
auth_verbose = yes
auth_failure_delay = 0
auth_cache_size = 0
first_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}
mail_location = {self.mail_location}
mail_plugins = $mail_plugins {self.mail_plugins}
{self._module_dir_line()}mail_uid = {self.mail_uid}
mail_gid = {self.mail_gid}
postmaster_address = postmaster@example.com
hostname = mail.example.com
lda_mailbox_autocreate = yes
lmtp_proxy = no
shutdown_clients = yes
verbose_proctitle = yes

namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    special_use = \\Junk
  }}
}}

passdb {{
{self._passdb_conf()}
}}
userdb {{
  driver = ldap
  args = {self.dir}/ldap-userdb.conf.ext
}}

service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {self.host}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
service auth {{
  # SASL for Postfix (smtpd_sasl_type = dovecot, inet:{self.host}:{self.auth_port})
  inet_listener auth-postfix {{
    address = {self.host}
    port = {self.auth_port}
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
service anvil {{
  # mode 0 = no socket: disables the auth penalty (failed logins from
  # 127.0.0.1 would otherwise delay every later login by up to 15 s)
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}

plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
  sieve_before = {self.sieve_before}
{self._plugin_settings()}}}
{self.extra_conf}
"""

    def _passdb_conf(self):
        return self.passdb or '  driver = ldap\n  args = %s/ldap-passdb.conf.ext' % self.dir

    def _module_dir_line(self):
        return 'mail_plugin_dir = %s\n' % self.module_dir if self.plugin_modules else ''

    def _plugin_settings(self):
        return ''.join('  %s = %s\n' % kv for kv in sorted(self.plugin_settings.items()))

    def _link_modules(self):
        """Dovecot loads plugins from one directory: ours beside its own."""
        if os.path.isdir(self.module_dir):
            shutil.rmtree(self.module_dir)
        os.makedirs(self.module_dir)
        system = '/usr/lib/dovecot/modules'
        for name in os.listdir(system):
            if name.endswith('.so'):
                os.symlink(os.path.join(system, name), os.path.join(self.module_dir, name))
        for path in self.plugin_modules:
            if not os.path.exists(path):
                raise FileNotFoundError('plugin not built: %s' % path)
            os.symlink(os.path.abspath(path),
                       os.path.join(self.module_dir, os.path.basename(path)))

    def _start(self):
        for d in (self.dir, self.base_dir, self.state_dir, self.sieve_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        os.makedirs(self.mail_root, exist_ok=True)
        os.chown(self.mail_root, self.mail_uid, self.mail_gid)
        os.chmod(self.mail_root, 0o770)
        _write(os.path.join(self.dir, 'ldap-passdb.conf.ext'),
               self._ldap_conf('passdb'), 0o600)
        _write(os.path.join(self.dir, 'ldap-userdb.conf.ext'),
               self._ldap_conf('userdb'), 0o600)
        if self.plugin_modules:
            self._link_modules()
        _write(self.conf_path, self._conf(), 0o644)
        shutil.copyfile(_SIEVE_BEFORE, self.sieve_before)
        os.chmod(self.sieve_before, 0o644)
        # Pre-compile so the LMTP process (running as the mail user)
        # never needs to write next to the script.
        _run(['sievec', '-c', self.conf_path, self.sieve_before])
        self._launch(['dovecot', '-F', '-c', self.conf_path], self.stderr_path)
        self._wait_ready((self.imap_port, self.pop3_port, self.lmtp_port,
                          self.auth_port), [self.stderr_path, self.log_path])

    def doveadm(self, *args, check=False, timeout=60, env=None):
        """Run 'doveadm -c <our config> ARGS'; returns CompletedProcess (text).
        env: variables added to the environment."""
        full_env = dict(os.environ, **env) if env else None
        return subprocess.run(['doveadm', '-c', self.conf_path] + list(args),
                              capture_output=True, text=True, timeout=timeout,
                              check=check, env=full_env)

    def mail_dir(self, user):
        """Maildir path of user 'local@domain' (may not exist yet)."""
        local, _, domain = user.lower().partition('@')
        return os.path.join(self.mail_root, domain, local, 'Maildir')

    def log(self):
        try:
            with open(self.log_path, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def wait_log(self, pattern, timeout=10):
        """Wait until regex pattern occurs in Dovecot's log (its log
        process writes a little after the event); returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() >= deadline:
                raise TimeoutError('%r not in %s:\n%s' % (pattern, self.log_path,
                                                          _tail(self.log_path)))
            time.sleep(0.1)


# --------------------------------------------------------------------------
# smtp-sink


class SmtpSink(_Component):
    """Postfix's smtp-sink on a free loopback port; every transaction is
    dumped into its own file, so received_count() counts files."""

    name = 'smtp-sink'

    def __init__(self, workdir=None, port=None):
        super().__init__(workdir, 'sink')
        self.port = port or free_port()
        self.host = LOOPBACK
        self.dump_dir = os.path.join(self.dir, 'dump')
        self.stderr_path = os.path.join(self.dir, 'smtp-sink.log')

    def _start(self):
        os.makedirs(self.dump_dir, exist_ok=True)
        _chown_r(self.dir, 'postfix', 'postfix')
        self._launch(['smtp-sink', '-u', 'postfix', '-h', 'sink.example',
                      '-d', os.path.join(self.dump_dir, '%Y%m%d%H%M%S.'),
                      '%s:%d' % (self.host, self.port), '32'],
                     self.stderr_path)
        self._wait_ready([self.port], [self.stderr_path])

    def _files(self):
        try:
            names = sorted(os.listdir(self.dump_dir))
        except OSError:
            return []
        return [os.path.join(self.dump_dir, n) for n in names]

    def received_count(self):
        """Number of mail transactions received so far."""
        return len(self._files())

    def messages(self):
        """Raw dump of every transaction (smtp-sink prepends X-Client-*,
        X-Mail-Args, X-Rcpt-Args ... pseudo headers)."""
        out = []
        for p in self._files():
            with open(p, 'rb') as f:
                out.append(f.read())
        return out

    def wait_count(self, n, timeout=20):
        """Wait until at least n transactions arrived; returns the count."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.received_count()
            if c >= n:
                return c
            time.sleep(0.1)
        raise TimeoutError('smtp-sink received %d < %d messages'
                           % (self.received_count(), n))


# --------------------------------------------------------------------------
# Postfix

_MASTER_CF = """# generated by mkstack: chroot = n everywhere
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_QUEUES = ('maildrop', 'incoming', 'active', 'deferred', 'hold')


class Postfix(_Component):
    """A private Postfix instance (postfix -c DIR start) on a loopback port."""

    name = 'postfix'

    def __init__(self, workdir=None, dovecot=None, sink=None, smtpd_milters='',
                 non_smtpd_milters='', extra_main=None, port=None):
        super().__init__(workdir, 'postfix')
        self.dovecot = dovecot
        self.sink = sink
        self.smtpd_milters = smtpd_milters
        self.non_smtpd_milters = non_smtpd_milters
        self.extra_main = dict(extra_main or {})
        self.smtp_port = port or free_port()
        self.host = LOOPBACK
        self.config_dir = os.path.join(self.dir, 'etc')
        self.queue_dir = os.path.join(self.dir, 'spool')
        self.data_dir = os.path.join(self.dir, 'data')
        self.maillog = os.path.join(self.dir, 'maillog')
        self.syslog_name = 'mk-postfix-%d' % self.smtp_port
        self.master_pid = None

    def main_params(self):
        """The main.cf parameters as an ordered dict (before extra_main)."""
        p = {
            'compatibility_level': '3.6',
            'queue_directory': self.queue_dir,
            'data_directory': self.data_dir,
            'meta_directory': '/etc/postfix',
            'shlib_directory': '/usr/lib/postfix',
            'daemon_directory': '/usr/lib/postfix/sbin',
            'command_directory': '/usr/sbin',
            'sendmail_path': '/usr/sbin/sendmail',
            'newaliases_path': '/usr/bin/newaliases',
            'mailq_path': '/usr/bin/mailq',
            'manpage_directory': '/usr/share/man',
            'sample_directory': '/usr/share/doc/postfix/examples',
            'readme_directory': 'no',
            'html_directory': 'no',
            'mail_owner': 'postfix',
            'setgid_group': 'postdrop',
            'syslog_name': self.syslog_name,
            'maillog_file': self.maillog,
            'maillog_file_prefixes': self.dir,
            'myhostname': 'mail.example.com',
            'mydomain': 'example.com',
            'myorigin': '$myhostname',
            'mydestination': '',
            'local_recipient_maps': '',
            'local_transport': 'error:5.1.1 local delivery is disabled',
            'alias_maps': '',
            'alias_database': '',
            'biff': 'no',
            'append_dot_mydomain': 'no',
            'inet_interfaces': self.host,
            # 'all' so that XCLIENT ADDR=IPV6:... and [::1] in mynetworks
            # are understood; we still only listen on 127.0.0.1.
            'inet_protocols': 'all',
            'mynetworks': '127.0.0.0/8 [::1]/128',
            'smtpd_authorized_xclient_hosts': '127.0.0.0/8 [::1]/128',
            'smtpd_peername_lookup': 'no',
            'smtp_dns_support_level': 'disabled',
            'relay_domains': 'example.com example.org',
            # No recipient validation in Postfix: the milters do it.
            'relay_recipient_maps': '',
            'smtpd_relay_restrictions':
                'permit_mynetworks permit_sasl_authenticated defer_unauth_destination',
            'smtpd_tls_security_level': 'none',
            'smtp_tls_security_level': 'none',
            'lmtp_tls_security_level': 'none',
            'smtpd_tls_auth_only': 'no',
            'smtpd_milters': self.smtpd_milters,
            'non_smtpd_milters': self.non_smtpd_milters,
            'milter_default_action': 'tempfail',
            'milter_protocol': '6',
            # Faster, deterministic tests.
            'smtpd_error_sleep_time': '0',
            'smtpd_soft_error_limit': '100',
            'smtpd_hard_error_limit': '200',
            'in_flow_delay': '0',
            'queue_run_delay': '5s',
            'minimal_backoff_time': '5s',
            'maximal_backoff_time': '10s',
            'delay_warning_time': '0',
            'lmtp_connection_cache_on_demand': 'no',
        }
        if self.dovecot is not None:
            d = self.dovecot
            nexthop = 'lmtp:[%s]:%d' % (d.host, d.lmtp_port)
            p['transport_maps'] = 'inline:{ example.com=%s, example.org=%s }' % (
                nexthop, nexthop)
            p['smtpd_sasl_auth_enable'] = 'yes'
            p['smtpd_sasl_type'] = 'dovecot'
            p['smtpd_sasl_path'] = 'inet:%s:%d' % (d.host, d.auth_port)
            p['smtpd_sasl_security_options'] = 'noanonymous'
        else:
            p['transport_maps'] = ''
            p['relay_transport'] = 'discard:no dovecot'
        if self.sink is not None:
            p['relayhost'] = '[%s]:%d' % (self.sink.host, self.sink.port)
        else:
            p['relayhost'] = ''
            p['default_transport'] = 'discard:no smtp sink'
        p.update(self.extra_main)
        return p

    def _age_config(self):
        """Backdate main.cf/master.cf.  Postfix programs that load a config
        file modified within the last second sleep until it is older (to
        avoid reading a half-written file), which costs ~1-2 s per start,
        reload or postconf; we know our writes are complete."""
        t = time.time() - 5
        for name in ('main.cf', 'master.cf'):
            path = os.path.join(self.config_dir, name)
            if os.path.exists(path):
                os.utime(path, (t, t))

    def _postfix(self, *args, check=True, timeout=60):
        return _run(['postfix', '-c', self.config_dir] + list(args),
                    check=check, timeout=timeout)

    def _start(self):
        os.makedirs(self.config_dir, exist_ok=True)
        os.makedirs(self.queue_dir, exist_ok=True)
        os.chmod(self.queue_dir, 0o755)
        os.makedirs(self.data_dir, exist_ok=True)
        os.chown(self.data_dir, _uid('postfix'), _gid('postfix'))
        os.chmod(self.data_dir, 0o700)
        main = ''.join('%s = %s\n' % kv for kv in self.main_params().items())
        _write(os.path.join(self.config_dir, 'main.cf'),
               '# generated by mkstack\n' + main)
        _write(os.path.join(self.config_dir, 'master.cf'),
               _MASTER_CF.format(listen='%s:%d' % (self.host, self.smtp_port)))
        self._age_config()
        # Before 'postfix start': should a later step fail, stop() then
        # looks for the (daemonized) master to kill.
        self.started = True
        self._postfix('start')
        self._read_master_pid()
        self._wait_ready([self.smtp_port], [self.maillog],
                         alive=self._master_alive)

    def _read_master_pid(self, timeout=10):
        path = os.path.join(self.queue_dir, 'pid', 'master.pid')
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(path) as f:
                    pid = int(f.read().strip())
                st = _proc_stat(pid)
                if st is not None:
                    self.master_pid, self._starttime = pid, st[1]
                    return pid
            except (OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError('postfix master pid file missing:\n' +
                                   _tail(self.maillog))
            time.sleep(0.05)

    def _master_alive(self):
        return self.master_pid is not None and _pid_alive(self.master_pid,
                                                           self._starttime)

    def stop(self):
        if self.master_pid is None and self.started:
            try:    # start() failed after the master came up?
                self._read_master_pid(timeout=0)
            except RuntimeError:
                pass
        if self.master_pid is not None:
            _terminate_tree(
                self.master_pid, self._starttime,
                graceful=lambda: self._postfix('stop', check=False, timeout=20))
            self.master_pid = None
        super().stop()

    def reload(self):
        """postfix reload (re-reads main.cf/master.cf; new smtpd processes
        pick up the change, existing connections keep the old settings)."""
        old = _descendants(self.master_pid) if self.master_pid else []
        self._postfix('reload')
        # Processes of the old generation exit once idle; wait for them so
        # that the next connection surely sees the new settings.
        _wait_gone(old, 10)

    def set_params(self, **kw):
        """postconf -c DIR -e key=value ... then reload."""
        if not kw:
            return
        self.extra_main.update(kw)
        _run(['postconf', '-c', self.config_dir, '-e'] +
             ['%s=%s' % (k, v) for k, v in kw.items()])
        self._age_config()
        if self.started:
            self.reload()

    def postconf(self, *args):
        """postconf -c DIR ARGS; returns stdout text."""
        return _run(['postconf', '-c', self.config_dir] +
                    list(args)).stdout.decode()

    def postqueue(self, *args, check=True):
        return _run(['postqueue', '-c', self.config_dir] + list(args), check=check)

    def postsuper(self, *args, check=True):
        return _run(['postsuper', '-c', self.config_dir] + list(args), check=check)

    def queue_ids(self):
        """Queue ids of all messages currently in any queue."""
        ids = []
        for q in _QUEUES:
            for root, _dirs, files in os.walk(os.path.join(self.queue_dir, q)):
                ids.extend(files)
        return ids

    def queue_count(self):
        """Number of messages in maildrop/incoming/active/deferred/hold."""
        return len(self.queue_ids())

    def flush(self):
        """postqueue -f: attempt delivery of all queued mail now."""
        self.postqueue('-f', check=False)

    def wait_queue_empty(self, timeout=20, flush_every=3.0):
        """Wait until the queue is empty (flushing now and then)."""
        deadline = time.monotonic() + timeout
        last_flush = time.monotonic()
        while time.monotonic() < deadline:
            if self.queue_count() == 0:
                return True
            if time.monotonic() - last_flush >= flush_every:
                self.flush()
                last_flush = time.monotonic()
            time.sleep(0.1)
        raise TimeoutError('postfix queue not empty after %ss: %d message(s)\n%s'
                           % (timeout, self.queue_count(), _tail(self.maillog)))

    def sendmail(self, mail_from, rcpts, data, extra_args=(), timeout=30):
        """Local submission: sendmail -C config_dir -f FROM -i -- RCPTS."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        if isinstance(data, str):
            data = data.encode('utf-8')
        return _run(['sendmail', '-C', self.config_dir, '-f', mail_from, '-i'] +
                    list(extra_args) + ['--'] + list(rcpts),
                    input=data, check=False, timeout=timeout)

    def log(self):
        try:
            with open(self.maillog, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def wait_log(self, pattern, timeout=10, start=0):
        """Wait until regex pattern occurs in maillog (from offset start);
        returns the match object."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log()[start:])
            if m:
                return m
            if time.monotonic() >= deadline:
                raise TimeoutError('%r not in %s:\n%s' % (
                    pattern, self.maillog, _tail(self.maillog)))
            time.sleep(0.1)

    def log_size(self):
        """Current maillog length, for wait_log(start=...)."""
        return len(self.log())


# --------------------------------------------------------------------------
# our own binaries


class Daemon(_Process):
    """Start one of our own binaries in the foreground and supervise it.

    argv     -- list; the program must not daemonize.
    port     -- TCP port that must be listening before start() returns
                (checked in /proc/net/tcp*, so a milter sees no probe
                connection; probe_connect=True also connects to host:port).
    unix_path-- alternatively a unix socket that must accept a connection.
                With neither, start() only checks the process is still
                alive after ready_delay seconds.
    env, cwd -- for subprocess.Popen.  stdout+stderr go to
                <workdir>/<name>.stderr (appended across restarts).
    """

    def __init__(self, argv, port=None, workdir=None, name=None, host=LOOPBACK,
                 unix_path=None, env=None, cwd=None, start_timeout=15,
                 ready_delay=0.3, probe_connect=False):
        self.argv = [str(a) for a in argv]
        self.port = port
        self.host = host
        self.unix_path = unix_path
        self.env = env
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.ready_delay = ready_delay
        self.probe_connect = probe_connect
        self.name = name or os.path.basename(self.argv[0])
        self.workdir = workdir if workdir is not None else make_workdir()
        if workdir is None:     # removed at exit (unless MK_KEEP=1)
            _ATEXIT_DIRS.append(self.workdir)
        self.stderr_path = os.path.join(self.workdir, '%s.stderr' % self.name)
        self.proc = None
        self._starttime = None
        self.starts = 0
        self.last_returncode = None

    def __repr__(self):
        return '<Daemon %s pid=%s>' % (self.name, self.pid)

    def __enter__(self):
        if not self.running:
            self.start()
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self):
        return self._proc_alive()

    @property
    def returncode(self):
        return self.proc.poll() if self.proc is not None else None

    def start(self):
        if self.running:
            return self
        _register(self)
        _install_sigterm_handler()
        header = '--- start #%d: %s\n' % (self.starts + 1, ' '.join(self.argv))
        self._spawn(self.argv, self.stderr_path, header=header.encode(),
                    env=self.env, cwd=self.cwd)
        self.starts += 1
        alive = self._proc_alive
        ok = True
        if self.port is not None:
            ok = wait_port(self.port, self.host, self.start_timeout, alive,
                           connect=self.probe_connect)
        elif self.unix_path is not None:
            deadline = time.monotonic() + self.start_timeout
            ok = False
            while time.monotonic() < deadline and alive():
                if _can_connect_unix(self.unix_path):
                    ok = True
                    break
                time.sleep(0.05)
        else:
            time.sleep(self.ready_delay)
            ok = alive()
        if not ok:
            rc = self.proc.poll()
            self.stop()
            raise RuntimeError('%s did not become ready (exit=%s):\n%s' % (
                self.name, rc, self.stderr()))
        return self

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Send sig, wait up to timeout, then SIGKILL.  Idempotent.
        Returns the exit status (or None if never started)."""
        rc = None
        proc = self._terminate(sig, timeout)
        if proc is not None:
            rc = self.last_returncode = proc.poll()
        _unregister(self)
        return rc

    def kill9(self):
        """SIGKILL (simulated crash).  Returns the exit status."""
        return self.stop(sig=signal.SIGKILL, timeout=5)

    def restart(self):
        self.stop()
        return self.start()

    def wait_exit(self, timeout=10):
        """Wait for the process to exit by itself; returns its status."""
        if self.proc is None:
            return None
        return self.proc.wait(timeout=timeout)

    def stderr(self):
        """Everything the process wrote to stdout/stderr so far."""
        try:
            with open(self.stderr_path, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''


# --------------------------------------------------------------------------
# SMTP client


class SendResult:
    """What happened at each SMTP stage.

    Each stage attribute is None (not reached) or (code, text); code 0
    means no reply (connection failed or was closed by the server):
    connect, helo (EHLO, the one after XCLIENT if any), xclient, auth,
    mail, rcpt (dict recipient -> (code, text)), data_start (reply to
    DATA, 354 expected), data (reply after the final "."), quit.
    ``stages`` lists (stage, code, text) in order; multi-line replies
    are joined with newlines.  ``closed_by_server`` is True when the
    server dropped the connection (e.g. after a 421)."""

    def __init__(self):
        self.connect = None
        self.helo = None        # EHLO reply (after XCLIENT if any)
        self.xclient = None
        self.auth = None
        self.mail = None
        self.rcpt = {}
        self.data_start = None  # reply to DATA (354 expected)
        self.data = None        # reply after the final "."
        self.quit = None
        self.ehlo_features = []
        self.stages = []        # [(stage, code, text)] in order
        self.closed_by_server = False

    @property
    def accepted_rcpts(self):
        return [r for r, (c, _t) in self.rcpt.items() if 200 <= c < 300]

    @property
    def rejected_rcpts(self):
        return [r for r, (c, _t) in self.rcpt.items() if not 200 <= c < 300]

    @property
    def ok(self):
        """True when the message was accepted (queued) after DATA."""
        return self.data is not None and 200 <= self.data[0] < 300

    @property
    def queue_id(self):
        if not self.ok:
            return None
        m = re.search(r'queued as ([0-9A-Za-z]+)', self.data[1])
        return m.group(1) if m else None

    @property
    def last(self):
        """(stage, code, text) of the last command sent."""
        return self.stages[-1] if self.stages else None

    def _record(self, stage, reply):
        self.stages.append((stage,) + tuple(reply))

    def __repr__(self):
        return '<SendResult ok=%s %s>' % (self.ok, ' '.join(
            '%s=%s' % (s, c) for s, c, _t in self.stages))

    def describe(self):
        return '\n'.join('%-10s %s %s' % (s, c, t.replace('\n', ' | '))
                         for s, c, t in self.stages)


class _Closed(Exception):
    pass


class _EndSession(Exception):
    pass


class _SmtpConn:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.f = self.sock.makefile('rb')

    def send(self, line):
        if isinstance(line, str):
            line = line.encode('utf-8')
        try:
            self.sock.sendall(line + b'\r\n')
        except OSError as e:
            raise _Closed(str(e))

    def send_raw(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise _Closed(str(e))

    def reply(self):
        lines, code = [], 0
        while True:
            try:
                line = self.f.readline(8192)
            except OSError as e:
                raise _Closed(str(e))
            if not line:
                raise _Closed('connection closed by server')
            line = line.decode('utf-8', 'replace').rstrip('\r\n')
            try:
                code = int(line[:3])
            except ValueError:
                code = 0
            lines.append(line[4:])
            if len(line) < 4 or line[3] != '-':
                return code, '\n'.join(lines)

    def close(self):
        for c in (self.f, self.sock):
            try:
                c.close()
            except OSError:
                pass


def _xtext(value):
    out = []
    for ch in str(value).encode('utf-8'):
        if ch < 33 or ch > 126 or ch in (ord('+'), ord('=')):
            out.append('+%02X' % ch)
        else:
            out.append(chr(ch))
    return ''.join(out)


def build_message(mail_from, rcpts, subject='mkstack test', body=None,
                  headers=None):
    """A small RFC 5322 message as bytes (CRLF line ends)."""
    hdrs = [('From', '<%s>' % mail_from if mail_from else '<>'),
            ('To', ', '.join('<%s>' % r for r in rcpts)),
            ('Subject', subject),
            ('Date', email.utils.formatdate(localtime=True)),
            ('Message-ID', email.utils.make_msgid(domain='client.example')),
            ('MIME-Version', '1.0'),
            ('Content-Type', 'text/plain; charset=utf-8'),
            ('Content-Transfer-Encoding', '8bit')]
    if headers:
        items = headers.items() if isinstance(headers, dict) else headers
        hdrs.extend(items)
    if body is None:
        body = 'Test message from mkstack.\n'
    text = ''.join('%s: %s\n' % h for h in hdrs) + '\n' + body
    return text.replace('\r\n', '\n').replace('\n', '\r\n').encode('utf-8')


def _dot_stuff(data):
    if isinstance(data, str):
        data = data.encode('utf-8')
    data = data.replace(b'\r\n', b'\n').replace(b'\r', b'\n')
    lines = data.split(b'\n')
    if lines and lines[-1] == b'':
        lines.pop()
    out = b''.join((b'.' + ln if ln.startswith(b'.') else ln) + b'\r\n'
                   for ln in lines)
    return out + b'.\r\n'


def send(host, port, mail_from, rcpts, data=None, subject='mkstack test',
         helo='client.example', xclient=None, auth=None, headers=None,
         body=None, mail_options=(), timeout=30):
    """One SMTP session.  Never raises on 4xx/5xx (or on a dropped
    connection): each reply is recorded in the returned SendResult and the
    session is ended cleanly (QUIT unless the server already closed).

    xclient -- dict of XCLIENT attributes, e.g. {'ADDR': '192.0.2.7',
               'NAME': '[UNAVAILABLE]', 'LOGIN': 'alice@example.com'};
               IPv6 addresses as 'IPV6:2001:db8::5' (the prefix is added
               if missing).  EHLO is repeated after XCLIENT.
    auth    -- (user, password) for AUTH PLAIN.
    data    -- full message (str/bytes); default: build_message(...) with
               subject/headers/body.
    """
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    res = SendResult()
    try:
        conn = _SmtpConn(host, port, timeout)
    except OSError as e:
        res.connect = (0, 'connect failed: %s' % e)
        res._record('connect', res.connect)
        return res

    def cmd(name, line):
        """Send line, return the reply; (0, why) if the connection is gone."""
        try:
            if line is not None:
                conn.send(line)
            r = conn.reply()
        except _Closed as e:
            res.closed_by_server = True
            r = (0, str(e))
        res._record(name, r)
        if r[0] == 421:
            res.closed_by_server = True
        return r

    try:
        res.connect = cmd('connect', None)
        if res.connect[0] != 220:
            raise _EndSession
        res.helo = cmd('helo', 'EHLO ' + helo)
        if res.helo[0] != 250:
            raise _EndSession
        res.ehlo_features = res.helo[1].split('\n')[1:]
        if xclient:
            parts = []
            for k, v in xclient.items():
                v = str(v)
                if k.upper() == 'ADDR' and ':' in v and \
                        not v.upper().startswith('IPV6:'):
                    v = 'IPV6:' + v
                parts.append('%s=%s' % (k.upper(), _xtext(v)))
            res.xclient = cmd('xclient', 'XCLIENT ' + ' '.join(parts))
            if res.xclient[0] != 220:
                raise _EndSession
            res.helo = cmd('helo', 'EHLO ' + helo)
            if res.helo[0] != 250:
                raise _EndSession
            res.ehlo_features = res.helo[1].split('\n')[1:]
        if auth:
            user, pw = auth
            tok = base64.b64encode(('\0%s\0%s' % (user, pw)).encode()).decode()
            res.auth = cmd('auth', 'AUTH PLAIN ' + tok)
            if res.auth[0] != 235:
                raise _EndSession
        opts = ''.join(' ' + o for o in mail_options)
        res.mail = cmd('mail', 'MAIL FROM:<%s>%s' % (mail_from, opts))
        if res.mail[0] != 250:
            raise _EndSession
        for r in rcpts:
            res.rcpt[r] = cmd('rcpt', 'RCPT TO:<%s>' % r)
            if res.closed_by_server:
                raise _EndSession
        if not res.accepted_rcpts:
            raise _EndSession
        res.data_start = cmd('data_start', 'DATA')
        if res.data_start[0] != 354:
            raise _EndSession
        if data is None:
            data = build_message(mail_from, rcpts, subject, body, headers)
        try:
            conn.send_raw(_dot_stuff(data))
        except _Closed:
            pass  # the reply (or EOF) tells what happened
        res.data = cmd('data', None)
    except _EndSession:
        pass
    finally:
        if not res.closed_by_server:
            res.quit = cmd('quit', 'QUIT')
        conn.close()
    return res


# --------------------------------------------------------------------------
# IMAP / POP3


def _imap_quote(name):
    return '"%s"' % name.replace('\\', '\\\\').replace('"', '\\"')


def imap_messages(port, user, password=DEMO_PASSWORD, folder='INBOX',
                  host=LOOPBACK, timeout=10):
    """[(uid, raw bytes)] of every message in folder ([] if it does not
    exist).  Read-only: flags are not changed."""
    out = []
    m = imaplib.IMAP4(host, port, timeout=timeout)
    try:
        m.login(user, password)
        typ, _ = m.select(_imap_quote(folder), readonly=True)
        if typ != 'OK':
            return []
        typ, data = m.uid('SEARCH', None, 'ALL')
        uids = data[0].split() if typ == 'OK' and data and data[0] else []
        for uid in uids:
            typ, data = m.uid('FETCH', uid, '(BODY.PEEK[])')
            if typ != 'OK':
                continue
            for item in data:
                if isinstance(item, tuple):
                    out.append((int(uid), item[1]))
                    break
        try:
            m.close()
        except imaplib.IMAP4.error:
            pass
    finally:
        try:
            m.logout()
        except Exception:
            pass
    return out


def _match(predicate, raw):
    if predicate is None:
        return True
    if isinstance(predicate, str):
        predicate = predicate.encode('utf-8')
    if isinstance(predicate, bytes):
        return predicate in raw
    return bool(predicate(raw))


def wait_for_message(port, user, password=DEMO_PASSWORD, folder='INBOX',
                     predicate=None, timeout=20, host=LOOPBACK):
    """Poll folder until a message satisfies predicate (callable on raw
    bytes, or a str/bytes substring); returns the raw bytes or raises
    TimeoutError."""
    deadline = time.monotonic() + timeout
    last_err = None
    while True:
        try:
            for _uid, raw in imap_messages(port, user, password, folder, host):
                if _match(predicate, raw):
                    return raw
        except (OSError, imaplib.IMAP4.error) as e:
            last_err = e
        if time.monotonic() >= deadline:
            raise TimeoutError('no matching message for %s in %s after %ss%s' % (
                user, folder, timeout,
                ' (last error: %s)' % last_err if last_err else ''))
        time.sleep(0.2)


def pop3_messages(port, user, password=DEMO_PASSWORD, host=LOOPBACK, timeout=10):
    """Raw bytes of every message in the POP3 maildrop (not deleted)."""
    p = poplib.POP3(host, port, timeout=timeout)
    try:
        p.user(user)
        p.pass_(password)
        count, _size = p.stat()
        out = []
        for i in range(1, count + 1):
            _resp, lines, _octets = p.retr(i)
            out.append(b'\r\n'.join(lines) + b'\r\n')
        return out
    finally:
        try:
            p.quit()
        except Exception:
            pass


# --------------------------------------------------------------------------
# the whole stack


class Stack:
    """Slapd + Dovecot + SmtpSink + Postfix in one work directory.

        with Stack() as st:
            st.start(smtpd_milters='inet:127.0.0.1:%d' % p)
            ...

    start() returns self and cleans up after itself if anything fails, so
    ``with Stack().start() as st:`` works too.  stop() is idempotent and
    removes the work directory unless MK_KEEP=1 (or keep=True)."""

    def __init__(self, workdir=None, sink=True, keep=False):
        self._own_workdir = workdir is None
        self.workdir = workdir or make_workdir()
        self.keep = keep
        self.slapd = Slapd(self.workdir)
        self.dovecot = Dovecot(self.workdir, self.slapd)
        self.sink = SmtpSink(self.workdir) if sink else None
        self.postfix = None
        self.started = False

    def __repr__(self):
        return '<Stack %s>' % self.workdir

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, smtpd_milters='', non_smtpd_milters='', extra_main=None):
        if self.started:
            return self
        _register(self)
        _install_sigterm_handler()
        with _stop_on_error(self):
            self.slapd.start()
            self.dovecot.start()
            if self.sink is not None:
                self.sink.start()
            self.postfix = Postfix(self.workdir, self.dovecot, self.sink,
                                   smtpd_milters, non_smtpd_milters, extra_main)
            self.postfix.start()
            self.started = True
        return self

    def stop(self):
        for comp in (self.postfix, self.sink, self.dovecot, self.slapd):
            if comp is not None:
                try:
                    comp.stop()
                except Exception as e:
                    sys.stderr.write('mkstack: stopping %s: %s\n' % (comp.name, e))
        self.started = False
        _unregister(self)
        if self._own_workdir and os.path.isdir(self.workdir):
            if self.keep:
                sys.stderr.write('mkstack: keeping work directory %s\n' % self.workdir)
            else:
                _remove_workdir(self.workdir)

    # ---- conveniences

    @property
    def smtp_port(self):
        return self.postfix.smtp_port

    @property
    def imap_port(self):
        return self.dovecot.imap_port

    @property
    def pop3_port(self):
        return self.dovecot.pop3_port

    def send(self, mail_from, rcpts, **kw):
        return send(LOOPBACK, self.postfix.smtp_port, mail_from, rcpts, **kw)

    def imap_messages(self, user, folder='INBOX', password=DEMO_PASSWORD):
        return imap_messages(self.dovecot.imap_port, user, password, folder)

    def pop3_messages(self, user, password=DEMO_PASSWORD):
        return pop3_messages(self.dovecot.pop3_port, user, password)

    def wait_for_message(self, user, predicate=None, folder='INBOX', timeout=20,
                         password=DEMO_PASSWORD):
        return wait_for_message(self.dovecot.imap_port, user, password, folder,
                                predicate, timeout)

    def describe(self):
        p, d, s = self.postfix, self.dovecot, self.slapd
        lines = ['workdir  %s' % self.workdir,
                 'ldap     %s  (admin %s / %s)' % (s.uri, s.admin_dn, s.admin_pw),
                 'smtp     127.0.0.1:%d  (config %s, log %s)' % (
                     p.smtp_port, p.config_dir, p.maillog),
                 'imap     127.0.0.1:%d' % d.imap_port,
                 'pop3     127.0.0.1:%d' % d.pop3_port,
                 'lmtp     127.0.0.1:%d' % d.lmtp_port,
                 'sasl     127.0.0.1:%d  (dovecot log %s)' % (d.auth_port, d.log_path)]
        if self.sink is not None:
            lines.append('sink     127.0.0.1:%d  (dumps in %s)' % (
                self.sink.port, self.sink.dump_dir))
        return '\n'.join(lines)


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description='Start a Mailkeep test stack and wait.')
    ap.add_argument('--smtpd-milters', default='')
    ap.add_argument('--non-smtpd-milters', default='')
    ap.add_argument('--keep', action='store_true',
                    help='keep the work directory (logs) after stopping')
    args = ap.parse_args(argv)
    st = Stack(keep=args.keep)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        st.start(smtpd_milters=args.smtpd_milters,
                 non_smtpd_milters=args.non_smtpd_milters)
        print(st.describe(), flush=True)
        print('Ctrl-C to stop.', flush=True)
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        st.stop()


if __name__ == '__main__':
    _main(sys.argv[1:])
