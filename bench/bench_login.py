#!/usr/bin/python3
"""IMAP logins per second: Dovecot checking passwords against LDAP itself,
against Dovecot going through PAM and pam_mailkeep, in the same run.

    bench_login.py [SECONDS] [CLIENTS]

Starts slapd and two Dovecot instances from the same configuration
(auth_cache_size = 0, so that every login is checked):

    ldap       passdb ldap with auth_bind: Dovecot's own LDAP login, the
               baseline
    pam        passdb pam, a PAM service (in /etc/pam.d, removed again)
               with pam_mailkeep.so bind in auth and account; measured
               three ways on the same users:
                 password          no second factor enrolled (policy
                                   optional): policy, store read, bind
                 password+code     an HOTP token each (the client counts
                                   with it): the store under its lock, the
                                   secret unsealed, the code checked, the
                                   record rewritten, then the bind
                 app password      an application password: its salted
                                   hash, no bind

CLIENTS clients (default 4, each its own user) connect, LOGIN and LOGOUT
in a loop for SECONDS seconds (default 10); any refused login stops the
run. Each measurement is taken twice and the better kept. Prints logins/s
and the median and 99th-percentile time from connect to LOGIN's OK."""
import base64
import os
import socket
import subprocess
import sys
import time
from multiprocessing import Process, Queue

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'harness'))
import mkstack  # noqa: E402

# the demo directory's users, one per client
USERS = [u for u in mkstack.DEMO_USERS if u != 'admin@example.com'][:8]
PASSWORD = mkstack.DEMO_PASSWORD
BUILDDIR = os.environ.get('MK_BUILDDIR', os.path.join(HERE, '..', 'build'))
MAILKEEP = os.path.join(BUILDDIR, 'tools', 'mailkeep')
MODULE = os.path.join(BUILDDIR, 'pam', 'pam_mailkeep.so')
SERVICE = 'mailkeep-bench-login'


def hotp(secret, counter, digits=6):
    import hashlib
    import hmac
    import struct
    mac = hmac.new(secret, struct.pack('>Q', counter), hashlib.sha1).digest()
    off = mac[-1] & 15
    return str((struct.unpack('>I', mac[off:off + 4])[0] & 0x7fffffff) % 10 ** digits).zfill(digits)


def recv_line(sock, buf):
    while b'\r\n' not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError('server closed the connection')
        buf += data
    line, buf = buf.split(b'\r\n', 1)
    return line, buf


def login_once(port, user, password):
    """Connect, LOGIN, LOGOUT; returns the seconds from connect to LOGIN's OK."""
    t0 = time.monotonic()
    sock = socket.create_connection(('127.0.0.1', port))
    try:
        buf = b''
        _, buf = recv_line(sock, buf)                   # greeting
        sock.sendall(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
        while True:
            line, buf = recv_line(sock, buf)
            if line.startswith(b'a '):
                break
        took = time.monotonic() - t0
        if not line.startswith(b'a OK'):
            raise RuntimeError('%s: login refused: %r' % (user, line))
        sock.sendall(b'b LOGOUT\r\n')
        while True:
            line, buf = recv_line(sock, buf)
            if line.startswith(b'b '):
                break
        return took
    finally:
        sock.close()


def client_main(port, user, how, secret, counter, seconds, queue):
    times = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if how == 'code':
                password = PASSWORD + hotp(secret, counter)
                counter += 1
            else:
                password = secret if how == 'apppass' else PASSWORD
            times.append(login_once(port, user, password))
        queue.put((user, times, counter, None))
    except Exception as e:              # reported by the parent
        queue.put((user, times, counter, str(e)))


def run_clients(port, users, how, secrets, seconds, counters):
    queue = Queue()
    procs = [Process(target=client_main,
                     args=(port, u, how, secrets.get(u), counters.get(u, 0), seconds, queue))
             for u in users]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    errors = [e for _, _, _, e in results if e]
    if errors:
        sys.exit('bench_login.py: %s' % errors[0])
    for u, _, counter, _ in results:    # HOTP: where each token stands now
        counters[u] = counter
    times = sorted(t for _, ts, _, _ in results for t in ts)
    return len(times) / seconds, times[len(times) // 2], times[int(len(times) * 0.99)]


def mailkeep(config, *args, input=None):
    cp = subprocess.run([MAILKEEP, '-c', config] + list(args), input=input,
                        capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        sys.exit('mailkeep %s: %s' % (' '.join(args), cp.stderr.strip()))
    return cp.stdout


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    n_clients = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    users = USERS[:n_clients]
    if not os.path.exists(MODULE):
        sys.exit('bench_login.py: %s is not built' % MODULE)
    workdir = mkstack.make_workdir('mk-bench-login-')
    slapd = mkstack.Slapd(workdir)
    slapd.start()
    config = os.path.join(workdir, 'mailkeep.conf')
    store = os.path.join(workdir, 'otp')
    os.makedirs(store, mode=0o700)
    with open(config, 'w') as f:
        f.write('[global]\nlog = stderr\ndirectory = ldap\n'
                '[ldap]\nuri = %s\nbase = %s\nbind_dn = %s\nbind_password = %s\n'
                '[otp]\nstore = %s\nkey_file = %s\npolicy = optional\n'
                % (slapd.uri, slapd.base_dn, slapd.service_dn, slapd.service_pw, store,
                   os.path.join(workdir, 'otp.key')))
    pam_file = os.path.join('/etc/pam.d', SERVICE)
    with open(pam_file, 'w') as f:
        f.write('# bench/bench_login.py (removed when it ends)\n'
                'auth    required %s config=%s bind\n'
                'account required %s config=%s\n' % (MODULE, config, MODULE, config))
    ldap = mkstack.Dovecot(os.path.join(workdir, 'ldap'), slapd)
    pam = mkstack.Dovecot(os.path.join(workdir, 'pam'), slapd,
                          passdb='  driver = pam\n  args = %s' % SERVICE)
    try:
        ldap.start()
        pam.start()
        print('%d clients, %d s per run, best of 2 runs each' % (n_clients, seconds))
        rows = []

        counters = {u: 1 for u in users}    # confirming a token spends counter 0

        def measure(label, dovecot, how, secrets):
            best = None
            for _ in range(2):
                print('run: %s' % label, file=sys.stderr, flush=True)
                r = run_clients(dovecot.imap_port, users, how, secrets, seconds, counters)
                if best is None or r[0] > best[0]:
                    best = r
            rows.append((label, best))

        measure('Dovecot passdb ldap', ldap, 'password', {})
        measure('pam_mailkeep: password', pam, 'password', {})
        # an HOTP token each, confirmed with counter 0
        secrets = {}
        for u in users:
            secret = os.urandom(20)
            mailkeep(config, 'otp', 'enroll', '-K', '-q', '-t', 'hotp', u,
                     input=base64.b32encode(secret).decode() + '\n')
            mailkeep(config, 'otp', 'confirm', u, hotp(secret, 0))
            secrets[u] = secret
        measure('pam_mailkeep: password+code', pam, 'code', secrets)
        apppass = {}
        for u in users:
            out = mailkeep(config, 'otp', 'apppass', 'add', '-s', SERVICE, '-l', 'bench', u)
            apppass[u] = next(l.strip() for l in out.splitlines()
                              if l.count('-') == 3 and len(l.strip()) == 19)
        measure('pam_mailkeep: app password', pam, 'apppass', apppass)
        print('  %-32s %10s %10s %10s' % ('', 'logins/s', 'p50 ms', 'p99 ms'))
        base = rows[0][1][0]
        for label, (rate, p50, p99) in rows:
            print('  %-32s %10.1f %10.2f %10.2f   %5.1f%%'
                  % (label, rate, p50 * 1000, p99 * 1000, 100.0 * rate / base))
    finally:
        pam.stop()
        ldap.stop()
        slapd.stop()
        os.unlink(pam_file)
        if os.environ.get('MK_KEEP') != '1':
            mkstack._remove_workdir(workdir)


if __name__ == '__main__':
    main()
