"""Shared set-up for the journal and archive integration tests."""
import glob
import os
import subprocess

from milterenv import BUILDDIR, MAILKEEP, Milter, write

JOURNAL = os.path.join(BUILDDIR, 'milters', 'journal', 'mailkeep-journal')


class JournalMilter(Milter):
    binary = JOURNAL
    name = 'mailkeep-journal'

    def __init__(self, workdir, slapd):
        super().__init__(workdir, 'journal')
        self.slapd = slapd
        self.spool = self.path('spool')
        self.write_config()

    def write_config(self, extra=''):
        write(self.config,
              '[global]\nlog = stderr\nlog_level = debug\ndirectory = ldap\n'
              'trusted_networks = 127.0.0.0/8 ::1/128\n'
              '[ldap]\nuri = %s\nbase = %s\nbind_dn = %s\nbind_password = %s\n'
              '[journal]\nsocket = inet:%d@127.0.0.1\nspool_dir = %s\n%s'
              % (self.slapd.uri, self.slapd.base_dn, self.slapd.service_dn,
                 self.slapd.service_pw, self.port, self.spool, extra))

    def entries(self):
        """[(message bytes, {key: value}, [(rcpt, direction)])] in spool order."""
        out = []
        for path in sorted(glob.glob(os.path.join(self.spool, 'new', '*'))):
            with open(path, 'rb') as f:
                data = f.read()
            trailer = data[-48:]
            assert trailer.startswith(b'\nMKJ1 ') and trailer.endswith(b'\n'), path
            msg_len, env_len = (int(x) for x in trailer[6:-1].split(b' '))
            assert msg_len + env_len + 48 == len(data)
            env, rcpts = {}, []
            for line in data[msg_len:msg_len + env_len].decode().splitlines():
                key, value = line.split(' ', 1)
                if key == 'rcpt':
                    rcpts.append(tuple(value.split(' ')))
                else:
                    env[key] = value
            out.append((data[:msg_len], env, rcpts))
        return out


class Archive:
    """An archive (its directory, keys and index) driven with the mailkeep
    command, fed from a journal spool."""

    def __init__(self, workdir, spool, doveadm='/usr/bin/doveadm', batch=256):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.config = os.path.join(workdir, 'mailkeep.conf')
        self.spool = spool
        write(self.config,
              '[global]\nlog = stderr\n'
              '[archive]\ndir = %s/archive\nkeys_dir = %s/keys\nbatch = %d\ndoveadm = %s\n'
              '[journal]\nspool_dir = %s\n' % (workdir, workdir, batch, doveadm, spool))

    def run(self, *args, check=True, timeout=300, binary=False):
        r = subprocess.run([MAILKEEP, '-c', self.config, 'archive'] + list(args),
                           capture_output=True, timeout=timeout, text=not binary)
        if check and r.returncode != 0:
            raise AssertionError('mailkeep archive %s: exit %d\n%s\n%s'
                                 % (' '.join(args), r.returncode, r.stdout, r.stderr))
        return r

    def search(self, *query, count=1000):
        """[(id, row text)] newest first."""
        out = self.run('search', '-n', str(count), *query).stdout.splitlines()
        assert out[0].startswith('ID ') and out[-1].endswith('on page 1'), out
        return [(int(line.split()[0]), line) for line in out[1:-1]]

    def object_location(self, msg_id):
        """(sha256, pack path, offset, length) of a message's stored object."""
        env = dict(line.split(': ', 1) for line in
                   self.run('show', '-e', str(msg_id)).stdout.splitlines() if ': ' in line)
        pack, _, offset, _, length = env['Stored'].split(' ')
        return env['SHA-256'], pack, int(offset), int(length)

    def spool_files(self):
        return glob.glob(os.path.join(self.spool, 'new', '*'))
