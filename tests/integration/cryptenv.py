"""The stack of the mailkeep_crypt tests: slapd, Dovecot with the plugin
(Maildir or sdbox), the server key, the escrow key pair and the user key
directory, and an independent reader of the message format (Python's
cryptography package, not our C) that opens messages with the escrow key."""
import os
import struct
import subprocess

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                              X25519PublicKey)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import mkstack
from milterenv import BUILDDIR

PLUGIN = os.path.join(BUILDDIR, 'dovecot-plugins', 'lib90_mailkeep_crypt_plugin.so')
MAGIC = b'\0MKCRYPT'


def raw_public(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


class CryptKeys:
    """A server key, an escrow key pair and a key directory, readable by
    Dovecot's mail user and nobody else."""

    def __init__(self, workdir, mail_user='mail'):
        import pwd
        pw = pwd.getpwnam(mail_user)
        self.dir = os.path.join(workdir, 'crypt')
        self.keys = os.path.join(self.dir, 'keys')
        os.makedirs(self.keys, mode=0o700, exist_ok=True)
        self.server_key = os.path.join(self.dir, 'server.key')
        with open(os.open(self.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                  'w') as f:
            f.write(os.urandom(32).hex() + '\n')
        self.escrow = X25519PrivateKey.generate()
        self.escrow_pub = os.path.join(self.dir, 'escrow.pub')
        with open(self.escrow_pub, 'w') as f:
            f.write(raw_public(self.escrow).hex() + '\n')
        for p in (self.dir, self.keys, self.server_key, self.escrow_pub):
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def plugin_settings(self, encrypt='yes', escrow=True):
        s = {'mailkeep_crypt': encrypt, 'mailkeep_crypt_keys': self.keys,
             'mailkeep_crypt_server_key': self.server_key}
        if escrow:
            s['mailkeep_crypt_escrow_key'] = self.escrow_pub
        return s


def start_dovecot(workdir, slapd, keys, mail_location='maildir:~/Maildir', **settings):
    d = mkstack.Dovecot(workdir, slapd, mail_plugins='mailkeep_crypt',
                        plugin_modules=[PLUGIN], mail_location=mail_location,
                        plugin_settings=dict(keys.plugin_settings(), **settings))
    d.start()
    return d


def open_with(private_key, data):
    """Decrypt a whole message as mk_mcrypt(3) describes it, with an X25519
    private key that has a slot; raises ValueError when anything is wrong."""
    if data[:8] != MAGIC or data[8] != 1:
        raise ValueError('not a mailkeep_crypt message')
    shift, nslots = data[9], data[10]
    eph = data[12:44]
    me = raw_public(private_key)
    my_id = _key_id(me)
    dek = None
    off = 44
    for _ in range(nslots):
        kind, kid, wrapped = data[off], data[off + 1:off + 9], data[off + 9:off + 57]
        off += 57
        if kid == my_id:
            secret = private_key.exchange(X25519PublicKey.from_public_bytes(eph))
            kek = HKDF(hashes.SHA256(), 32, eph + me, b'mailkeep-crypt v1 wrap').derive(secret)
            dek = AESGCM(kek).decrypt(b'\0' * 12, wrapped, bytes([kind]) + kid)
    if dek is None:
        raise ValueError('no slot for this key')
    chunk, out, index, last = 1 << shift, [], 0, False
    gcm = AESGCM(dek)
    while off < len(data):
        piece = data[off:off + chunk + 16]
        off += len(piece)
        last = off == len(data)
        out.append(gcm.decrypt(struct.pack('>Q', index) + b'\0\0\0' + bytes([last]),
                               piece, None))
        index += 1
    if not last:
        raise ValueError('no final chunk')
    return b''.join(out)


def _key_id(pub):
    import hashlib
    return hashlib.sha256(pub).digest()[:8]


def files_under(path):
    for root, _, names in os.walk(path):
        for n in names:
            yield os.path.join(root, n)


def grep_tree(path, needles):
    """Which of needles occur in any file under path (every byte, index files too)."""
    found = set()
    for p in files_under(path):
        try:
            with open(p, 'rb') as f:
                data = f.read()
        except OSError:
            continue
        for n in needles:
            if n in data:
                found.add((n, p))
    return found


def doveadm(d, *args, check=True):
    return subprocess.run(['doveadm', '-c', d.conf_path] + list(args), capture_output=True,
                          timeout=60, check=check)
