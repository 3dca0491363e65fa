"""What the integration tests of every Mailkeep milter share: paths to the
build, atomic file writes, and a milter daemon on a free port whose log
can be waited on and whose configuration can be reloaded."""
import os
import signal
import time

import mkstack

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BUILDDIR = os.environ.get('MK_BUILDDIR', os.path.join(ROOT, 'build'))
MAILKEEP = os.path.join(BUILDDIR, 'tools', 'mailkeep')


def write(path, text):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)       # a file is replaced whole, as an editor or deploy would


class Milter:
    """A milter binary run in the foreground with -c CONFIG on a free port.
    Subclasses write self.config (config_text()) before start()."""

    binary = None
    name = None

    def __init__(self, workdir, subdir):
        self.dir = os.path.join(workdir, subdir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = mkstack.free_port()
        self.config = os.path.join(self.dir, 'mailkeep.conf')
        self.daemon = mkstack.Daemon([self.binary, '-f', '-c', self.config], port=self.port,
                                     workdir=self.dir, name=self.name)

    def path(self, name):
        return os.path.join(self.dir, name)

    @property
    def socket(self):
        return 'inet:127.0.0.1:%d' % self.port

    def start(self):
        self.daemon.start()
        return self

    def stop(self):
        self.daemon.stop()

    def log(self):
        return self.daemon.stderr()

    def reload(self):
        os.kill(self.daemon.pid, signal.SIGUSR1)

    def wait_log(self, needle, timeout=15, start=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log()[start:]:
                return True
            time.sleep(0.05)
        return False

    def reload_and_wait(self):
        """SIGUSR1, then wait until the new configuration is in force;
        raises with the log if the reload failed."""
        before = len(self.log())
        self.reload()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            tail = self.log()[before:]
            if 'SIGUSR1: configuration generation' in tail:
                return
            if 'reload failed' in tail:
                raise RuntimeError(tail)
            time.sleep(0.05)
        raise TimeoutError('%s did not reload:\n%s' % (self.name, self.log()[before:]))
