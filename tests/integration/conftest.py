"""Integration-test fixtures: real slapd + Dovecot + Postfix (+ smtp-sink).

The harness lives in tests/harness/mkstack.py.  Tests need root (the
servers are started from the test and drop privileges themselves) and the
Debian packages postfix, dovecot-*, slapd, ldap-utils.
"""
import os
import shutil
import sys

import pytest

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'harness')
sys.path.insert(0, os.path.abspath(HARNESS))

import mkstack  # noqa: E402

_NEEDED = ('postfix', 'dovecot', 'slapd', 'slapadd', 'ldapsearch', 'smtp-sink',
           'sievec', 'doveadm', 'postconf')


def _missing():
    path = os.environ.get('PATH', '') + ':/usr/sbin:/sbin'
    return [b for b in _NEEDED if shutil.which(b, path=path) is None]


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = 'integration tests must run as root'
    elif _missing():
        reason = 'missing programs: ' + ', '.join(_missing())
    if reason:
        # tests/run-all sets MK_REQUIRE_SERVERS: there a missing server is a
        # failure, never a skip that looks like a pass.
        if os.environ.get('MK_REQUIRE_SERVERS') == '1':
            pytest.exit('cannot run the real-server tests: ' + reason, returncode=1)
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope='module')
def stack():
    """A started mkstack.Stack without milters, shared by one test module.

    Always stopped (processes killed, work dir removed unless MK_KEEP=1),
    also when a test or the start-up fails."""
    st = mkstack.Stack()
    try:
        st.start()
        yield st
    finally:
        st.stop()
