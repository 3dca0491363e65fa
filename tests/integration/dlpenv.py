"""Shared set-up for the mailkeep-dlp integration tests."""
import os

from milterenv import BUILDDIR, Milter, write

DLP = os.path.join(BUILDDIR, 'milters', 'dlp', 'mailkeep-dlp')

VALID_ID = 'A123456789'          # checksum valid
ID_TEXT = '請核對身分證字號 %s 是否正確' % VALID_ID


class DlpMilter(Milter):
    binary = DLP
    name = 'mailkeep-dlp'

    def __init__(self, workdir, slapd, postfix_config=None):
        super().__init__(workdir, 'dlp')
        self.slapd = slapd
        self.postfix_config = postfix_config or '/etc/postfix'
        self.incidents = os.path.join(self.dir, 'incidents.jsonl')
        self.write_config('')

    def config_text(self, rules, extra_dlp=''):
        return (
            '[global]\nlog = stderr\nlog_level = debug\ndirectory = ldap\n'
            'trusted_networks = 127.0.0.0/8 ::1/128 10.0.0.0/8\n'
            '[ldap]\nuri = %s\nbase = %s\nbind_dn = %s\nbind_password = %s\n'
            'cache_ttl = 1s\nnegative_cache_ttl = 1s\n'
            '[dlp]\nsocket = inet:%d@127.0.0.1\nincident_log = %s\n'
            'notify_command = /usr/sbin/sendmail -C %s -oi -t\n'
            'notify_from = postmaster@example.com\n%s'
            '[quarantine]\npostfix_config = %s\n%s' % (
                self.slapd.uri, self.slapd.base_dn, self.slapd.service_dn, self.slapd.service_pw,
                self.port, self.incidents, self.postfix_config, extra_dlp, self.postfix_config,
                rules))

    def write_config(self, rules, extra_dlp=''):
        write(self.config, self.config_text(rules, extra_dlp))

    def reconfigure(self, rules, extra_dlp=''):
        """Write a new configuration and wait until the milter runs it."""
        self.write_config(rules, extra_dlp)
        self.reload_and_wait()
