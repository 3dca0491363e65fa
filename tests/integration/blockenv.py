"""Shared set-up for the mailkeep-block integration tests: the milter's
configuration and lists in the stack's work directory, and the daemon."""
import os

from milterenv import BUILDDIR, Milter, write

BLOCK = os.path.join(BUILDDIR, 'milters', 'block', 'mailkeep-block')

LISTS = {
    'bad-clients': '# test bad clients\n192.0.2.0/24\n2001:db8:bad::/48\n',
    'allow-clients': '192.0.2.77\n',
    'bad-senders': '@spam.example\n/^offer[0-9]+@/\n',
    'allow-senders': 'friend@spam.example\n',
}


class BlockMilter(Milter):
    """mailkeep-block in the foreground on a free port, configured for a
    started (or about to start) mkstack.Stack's slapd."""

    binary = BLOCK
    name = 'mailkeep-block'

    def __init__(self, workdir, slapd, extra_block='', extra_global=''):
        super().__init__(workdir, 'block')
        os.makedirs(os.path.join(self.dir, 'personal'), exist_ok=True)
        for name, text in LISTS.items():
            write(self.path(name), text)
        self.slapd = slapd
        self.extra_block = extra_block
        self.extra_global = extra_global
        self.write_config()

    def config_text(self, extra_block=None):
        return (
            '[global]\n'
            'log = stderr\n'
            'log_level = debug\n'
            'directory = ldap\n'
            'trusted_networks = 127.0.0.0/8 ::1/128 10.0.0.0/8\n'
            'reload_interval = 1s\n'
            '%s'
            '[ldap]\n'
            'uri = %s\n'
            'base = %s\n'
            'bind_dn = %s\n'
            'bind_password = %s\n'
            'timeout = 3s\n'
            'cache_ttl = 1s\n'
            'negative_cache_ttl = 1s\n'
            '[block]\n'
            'socket = inet:%d@127.0.0.1\n'
            'bad_clients = %s\n'
            'allow_clients = %s\n'
            'bad_senders = %s\n'
            'allow_senders = %s\n'
            'personal_list_dir = %s\n'
            'dictionary_limit = 3\n'
            'dictionary_window = 1m\n'
            'dictionary_ban = 10m\n'
            'client_rate_limit = 5\n'
            'client_rate_window = 1m\n'
            'sender_rate_limit = 3\n'
            'sender_rate_window = 1h\n'
            '%s' % (self.extra_global, self.slapd.uri, self.slapd.base_dn,
                    self.slapd.service_dn, self.slapd.service_pw, self.port,
                    self.path('bad-clients'), self.path('allow-clients'),
                    self.path('bad-senders'), self.path('allow-senders'),
                    self.path('personal'),
                    self.extra_block if extra_block is None else extra_block))

    def write_config(self, extra_block=None):
        write(self.config, self.config_text(extra_block))

