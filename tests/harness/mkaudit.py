"""mailkeep-auditd for the tests and benchmarks: its configuration, its
keys, the daemon itself, and readers for what it keeps (the audit log and
the usage database). The Dovecot plugins that feed it are located with
plugin_modules()."""
import glob
import json
import os
import socket
import sqlite3
import subprocess

import mkstack

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BUILDDIR = os.environ.get('MK_BUILDDIR', os.path.join(ROOT, 'build'))
AUDITD = os.path.join(BUILDDIR, 'audit', 'mailkeep-auditd')
MAILKEEP = os.path.join(BUILDDIR, 'tools', 'mailkeep')
PLUGIN_DIR = os.path.join(BUILDDIR, 'dovecot-plugins')


def plugin_modules():
    """Our Dovecot plugins, as built."""
    return [os.path.join(PLUGIN_DIR, 'lib90_mailkeep_audit_plugin.so'),
            os.path.join(PLUGIN_DIR, 'lib90_mailkeep_usage_plugin.so')]


class AuditD:
    """mailkeep-auditd in the foreground, with a configuration, keys, log
    directory and database of its own under DIR. The socket is open to
    the group of Dovecot's mail user."""

    def __init__(self, dir, mail_group='mail', extra=''):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        os.chmod(dir, 0o755)
        self.config = os.path.join(dir, 'mailkeep.conf')
        self.socket = os.path.join(dir, 'audit.sock')
        self.log_dir = os.path.join(dir, 'log')
        self.db = os.path.join(dir, 'usage.sqlite')
        self.keys_dir = os.path.join(dir, 'keys')
        self.mail_group = mail_group
        self.write_config(extra)
        self.daemon = mkstack.Daemon([AUDITD, '-f', '-c', self.config], workdir=dir,
                                     name='mailkeep-auditd', unix_path=self.socket)

    def write_config(self, extra=''):
        text = ('[global]\nlog = stderr\nlog_level = debug\n'
                '[audit]\nsocket = %s\nsocket_mode = 0660\nsocket_group = %s\n'
                'log_dir = %s\ndb = %s\nkeys_dir = %s\n%s'
                '[usage]\ndoveadm = /usr/bin/doveadm\n'
                % (self.socket, self.mail_group, self.log_dir, self.db, self.keys_dir, extra))
        with open(self.config, 'w') as f:
            f.write(text)

    def set_doveadm(self, command):
        """Point `mailkeep usage` at a Dovecot instance ('doveadm -c CONF')."""
        with open(self.config) as f:
            text = f.read()
        text = text.replace('doveadm = /usr/bin/doveadm', 'doveadm = %s' % command)
        with open(self.config, 'w') as f:
            f.write(text)

    def start(self):
        if not os.path.exists(os.path.join(self.keys_dir, 'audit-signing.key')):
            self.mailkeep('audit', 'init', check=True)
        self.daemon.start()
        return self

    def stop(self):
        self.daemon.stop()

    def pid(self):
        return self.daemon.pid

    def mailkeep(self, *args, check=False, env=None, timeout=120):
        full_env = dict(os.environ, **env) if env else None
        r = subprocess.run([MAILKEEP, '-c', self.config] + list(args), capture_output=True,
                           text=True, timeout=timeout, env=full_env)
        if check and r.returncode != 0:
            raise AssertionError('mailkeep %s: exit %d\n%s%s' % (' '.join(args), r.returncode,
                                                                   r.stdout, r.stderr))
        return r

    def plugin_settings(self):
        return {'mailkeep_audit_socket': self.socket}

    def sync(self, timeout=10):
        """Wait until everything sent before now is on disk; returns the
        log's last sequence number."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.socket)
        s.sendall(b'S t1\n')
        buf = b''
        while not buf.endswith(b'\n'):
            data = s.recv(4096)
            if not data:
                break
            buf += data
        s.close()
        parts = buf.decode().split()
        if parts[:3] != ['S', 't1', 'ok']:
            raise AssertionError('sync failed: %r' % buf)
        return int(parts[3])

    def log_files(self):
        return sorted(glob.glob(os.path.join(self.log_dir, '*.log')))

    def records(self, op=None, user=None, with_checkpoints=False):
        """Every record of the log, in order, as dicts."""
        out = []
        for path in self.log_files():
            with open(path, 'rb') as f:
                for line in f:
                    if not line.endswith(b'\n'):
                        continue
                    r = json.loads(line)
                    if r.get('op') == 'checkpoint' and not with_checkpoints:
                        continue
                    if op is not None and r.get('op') != op:
                        continue
                    if user is not None and r.get('user') != user:
                        continue
                    out.append(r)
        return out

    def records_count(self):
        return len(self.records())

    def query(self, sql, *args):
        con = sqlite3.connect('file:%s?mode=ro' % self.db, uri=True)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()
