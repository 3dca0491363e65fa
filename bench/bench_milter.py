#!/usr/bin/python3
"""Postfix throughput with and without a Mailkeep milter, in one run.

smtp-source sends N messages (default 10,000) over 20 parallel sessions
to a throwaway Postfix on loopback, which relays them to smtp-sink. The
same Postfix runs in turn bare, with null-milter (a libmilter filter that
asks for the same protocol steps and accepts everything: the cost of any
milter) and with the milter under test, two rounds each, so drift
affects all alike.

block: mailkeep-block is made to work for every message: 127.0.0.1 is not
a trusted network, the lists are large (5,000 client networks, 5,000
sender entries, 10 patterns) and the rate limit and dictionary checks are
on (with limits the load does not reach).

dlp: mailkeep-dlp scans every message with every built-in detector and a
rule set; the message (bench/data/dlp-message.eml, made by this script)
is 5 KiB of Chinese and English prose with a .docx attachment and no
personal data, as most mail is.

Reported per mode: SMTP acceptance rate (smtp-source's wall time) and
end-to-end rate (until the last message reached the sink), and the
filters' CPU time and peak resident memory.

av: mailkeep-av scans the same message as dlp with a generated signature
set (5,000 MD5 signatures and 200 body patterns, plus EICAR); the
competitor is Debian's clamav-milter talking to clamd, both loaded with
the same signatures, in the same run (packages clamav-daemon and
clamav-milter; skipped, and said so, when they are missing).

recall: mailkeep-recall records every message in its SQLite database on
the work directory's disk (WAL, synchronous=FULL) before the MTA accepts.
The load is what a mail host's submission side sees: 127.0.0.1 is a
trusted network, the sender is a user of the local domain (in a 1,000-user
directory file), and each message has two recipients, one in the local
domain (internal) and one outside (outbound). smtp-source can only number
its recipients (1colleague@, 2colleague@), so Postfix's
smtpd_command_filter moves the second one to the outside domain, in every
mode alike. smtp-source's messages carry a Message-Id header, which the
milter records as is. undo_send stays 0: nothing is held. After the run
the database's size and rows are reported.

usage: bench/bench_milter.py block|dlp|av|recall [MESSAGES]   (as root; MK_BUILDDIR = build tree)
"""
import os
import random
import re
import subprocess
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'harness'))
import mkstack  # noqa: E402

BUILDDIR = os.environ.get('MK_BUILDDIR', os.path.join(ROOT, 'build'))
BLOCK = os.path.join(BUILDDIR, 'milters', 'block', 'mailkeep-block')
DLP = os.path.join(BUILDDIR, 'milters', 'dlp', 'mailkeep-dlp')
AV = os.path.join(BUILDDIR, 'milters', 'av', 'mailkeep-av')
RECALL = os.path.join(BUILDDIR, 'milters', 'recall', 'mailkeep-recall')
NULL_MILTER = os.path.join(BUILDDIR, 'bench', 'null-milter')
SESSIONS = int(os.environ.get('MK_BENCH_SESSIONS', '20'))
SIZE = 2048


def write_lists(d):
    rnd = random.Random(42)
    with open(os.path.join(d, 'bad-clients'), 'w') as f:
        for _ in range(4000):
            f.write('%d.%d.%d.0/24\n' % (rnd.randrange(11, 126), rnd.randrange(256), rnd.randrange(256)))
        for _ in range(1000):
            f.write('2001:db8:%x:%x::/64\n' % (rnd.randrange(65536), rnd.randrange(65536)))
    with open(os.path.join(d, 'bad-senders'), 'w') as f:
        for i in range(2500):
            f.write('spammer%d@bad%d.example\n' % (i, i % 97))
        for i in range(2500):
            f.write('junk%d.example\n' % i)
        for i in range(10):
            f.write('/^offer%d[0-9]+@/\n' % i)
    with open(os.path.join(d, 'domains'), 'w') as f:
        f.write('example.com\nexample.org\n')


PROSE = ('本公司將於下週三舉行季度業務檢討會議，請各部門準備簡報資料，並於會前將進度表寄給專案經理。'
         'The quarterly review moves to Wednesday; please send your slides and the updated '
         'schedule to the project manager before the meeting. 會議地點在三樓大會議室。\n')


def write_dlp_message(d):
    """A message with prose and a .docx attachment, and no personal data."""
    from mkdocs import docx
    from email.message import EmailMessage
    msg = EmailMessage()
    msg['From'] = 'bench@sender.example'
    msg['To'] = 'user@sink.example'
    msg['Subject'] = '季度業務檢討 quarterly review'
    msg.set_content(PROSE * 12)
    msg.add_attachment(docx(PROSE * 8), maintype='application',
                       subtype='vnd.openxmlformats-officedocument.wordprocessingml.document',
                       filename='議程.docx')
    path = os.path.join(d, 'dlp-message.eml')
    with open(path, 'wb') as f:
        f.write(msg.as_bytes().replace(b'\r\n', b'\n'))
    return path


def write_dlp_config(d, port):
    path = os.path.join(d, 'mailkeep.conf')
    with open(path, 'w') as f:
        f.write('[global]\nlog = stderr\ntrusted_networks = 10.0.0.0/8\n'
                'directory = files\ndirectory_domains_file = %s/domains\n'
                '[dlp]\nsocket = inet:%d@127.0.0.1\nincident_log = %s/incidents.jsonl\n'
                '[rule ids-out]\ndirection = outbound\n'
                'detectors = tw_national_id:high, tw_resident_cert:high\naction = quarantine\n'
                '[rule cards]\ndetectors = payment_card\naction = reject\n'
                '[rule everything]\ndetectors = tw_passport, tw_phone, iban, email\naction = log\n'
                % (d, port, d))
    return path


def write_av_db(d):
    """A signature set the benchmark makes itself: no download is possible."""
    import hashlib
    db = os.path.join(d, 'db')
    os.makedirs(db, exist_ok=True)
    rnd = random.Random(7)
    with open(os.path.join(db, 'bench.hdb'), 'w') as f:
        eicar = b'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
        f.write('%s:%d:Eicar-Test-Signature\n' % (hashlib.md5(eicar).hexdigest(), len(eicar)))
        for i in range(5000):
            f.write('%032x:%d:Bench.Hash.%d\n' % (rnd.getrandbits(128), rnd.randrange(100, 100000), i))
    with open(os.path.join(db, 'bench.ndb'), 'w') as f:
        for i in range(200):
            f.write('Bench.Body.%d:0:*:%s\n' % (i, '%032x' % rnd.getrandbits(128)))
    return db


def write_av_config(d, port, db):
    path = os.path.join(d, 'mailkeep.conf')
    with open(path, 'w') as f:
        f.write('[global]\nlog = stderr\ntrusted_networks = 10.0.0.0/8\n'
                'directory = files\ndirectory_domains_file = %s/domains\n'
                '[av]\nsocket = inet:%d@127.0.0.1\ndatabase_dir = %s\ntemp_dir = %s\n'
                % (d, port, db, d))
    return path


def start_clamav_milter(work, db):
    """clamd and clamav-milter on loopback, with the same signatures; None
    when Debian's packages are not installed."""
    import shutil
    if not (shutil.which('clamd', path='/usr/sbin:/usr/bin')
            and shutil.which('clamav-milter', path='/usr/sbin:/usr/bin')):
        print('clamd or clamav-milter missing (apt-get install clamav-daemon clamav-milter): '
              'no comparison', flush=True)
        return []
    d = os.path.join(work, 'clamav')
    os.makedirs(d, exist_ok=True)
    cport, mport = mkstack.free_port(), mkstack.free_port()
    with open(os.path.join(d, 'clamd.conf'), 'w') as f:
        f.write('Foreground yes\nTCPSocket %d\nTCPAddr 127.0.0.1\nDatabaseDirectory %s\n'
                'TemporaryDirectory %s\nLogFile %s/clamd.log\nUser root\nMaxThreads 12\n'
                % (cport, db, d, d))
    with open(os.path.join(d, 'clamav-milter.conf'), 'w') as f:
        f.write('Foreground yes\nMilterSocket inet:%d@127.0.0.1\nClamdSocket tcp:127.0.0.1:%d\n'
                'OnInfected Reject\nOnFail Defer\nAddHeader No\nLogFile %s/clamav-milter.log\n'
                'User root\n' % (mport, cport, d))
    clamd = mkstack.Daemon(['clamd', '-c', os.path.join(d, 'clamd.conf')], port=cport,
                           workdir=d, name='clamd', start_timeout=120)
    clamd.start()
    milter = mkstack.Daemon(['clamav-milter', '-c', os.path.join(d, 'clamav-milter.conf')],
                            port=mport, workdir=d, name='clamav-milter')
    milter.start()
    milter.socket = 'inet:127.0.0.1:%d' % mport
    return [clamd, milter]


def write_config(d, port):
    path = os.path.join(d, 'mailkeep.conf')
    with open(path, 'w') as f:
        f.write('[global]\nlog = stderr\ntrusted_networks = 10.0.0.0/8\n'
                'directory = files\ndirectory_domains_file = %s/domains\n'
                '[block]\nsocket = inet:%d@127.0.0.1\n'
                'bad_clients = %s/bad-clients\nbad_senders = %s/bad-senders\n'
                'client_rate_limit = 100000000\nsender_rate_limit = 100000000\n'
                'dictionary_limit = 10\n' % (d, port, d, d))
    return path


RECALL_DOMAIN = 'corp.example'


def write_recall_config(d, port):
    """A mail host's view: its domain, 1,000 users, loopback trusted."""
    with open(os.path.join(d, 'domains'), 'w') as f:
        f.write('%s\n' % RECALL_DOMAIN)
    with open(os.path.join(d, 'users'), 'w') as f:
        f.write('bench@%s group=staff,sales\n' % RECALL_DOMAIN)
        for i in range(999):
            f.write('user%d@%s group=staff%s\n'
                    % (i, RECALL_DOMAIN, ',sales' if i % 10 == 0 else ''))
    path = os.path.join(d, 'mailkeep.conf')
    with open(path, 'w') as f:
        f.write('[global]\nlog = stderr\ntrusted_networks = 127.0.0.0/8\n'
                'directory = files\ndirectory_domains_file = %s/domains\n'
                'directory_users_file = %s/users\n'
                '[recall]\nsocket = inet:%d@127.0.0.1\ndb = %s/recall.sqlite\nundo_send = 0\n'
                % (d, d, port, d))
    return path


def write_recall_command_filter(d):
    """smtp-source numbers its recipients in one domain; send the second
    one outside, so that each message is both internal and outbound."""
    path = os.path.join(d, 'command-filter')
    with open(path, 'w') as f:
        f.write('/^RCPT TO:<2([^@>]*)@%s>(.*)$/\tRCPT TO:<$1@partner.example>$2\n'
                % re.escape(RECALL_DOMAIN))
    return path


def recall_db_report(path):
    """The database's size and what it holds; call after the milter stopped."""
    import sqlite3
    files = {suffix: os.path.getsize(path + suffix) for suffix in ('', '-wal', '-shm')
             if os.path.exists(path + suffix)}
    db = sqlite3.connect(path)
    try:
        rows, added, distinct_ids, held, owned = db.execute(
            'SELECT count(*), total(added_id), count(DISTINCT message_id),'
            ' count(hold_state), count(owner) FROM messages').fetchone()
        directions = db.execute('SELECT direction, count(*) FROM recipients'
                                ' GROUP BY direction ORDER BY direction').fetchall()
        page_size = db.execute('PRAGMA page_size').fetchone()[0]
        free_pages = db.execute('PRAGMA freelist_count').fetchone()[0]
    finally:
        db.close()
    total = sum(files.values())
    print('recall database after the run: %s' % ', '.join(
        '%s%s %d bytes' % (os.path.basename(path), suffix, size) for suffix, size in files.items()))
    print('  %d messages (%d distinct Message-IDs, %d added by the milter, %d held, %d with '
          'an owner); recipients: %s' % (
              rows, distinct_ids, int(added), held, owned,
              ', '.join('%s %d' % (d, n) for d, n in directions)))
    if rows:
        print('  %.0f bytes per message in all (page size %d, %d free pages)'
              % (total / rows, page_size, free_pages))
    return rows


def sent_count(postfix):
    return len(re.findall(r' status=sent ', postfix.log()))


def load_spec(**kw):
    """What smtp-source sends: a generated 2 KiB body (or message_file),
    from sender to rcpts recipients numbered by smtp-source when more than one."""
    spec = dict(message_file=None, sender='bench@sender.example', recipient='user@sink.example',
                rcpts=1, subject=None)
    spec.update(kw)
    return types.SimpleNamespace(**spec)


def run_once(postfix, messages, load):
    before = sent_count(postfix)
    args = ['-F', load.message_file] if load.message_file else ['-l', str(SIZE)]
    if load.rcpts > 1:
        args += ['-r', str(load.rcpts)]
    if load.subject:
        args += ['-S', load.subject]
    deliveries = messages * load.rcpts     # Postfix logs each recipient's delivery
    t0 = time.monotonic()
    subprocess.run(['smtp-source', '-m', str(messages), '-s', str(SESSIONS)] + args +
                   ['-f', load.sender, '-t', load.recipient,
                    '127.0.0.1:%d' % postfix.smtp_port], check=True)
    t1 = time.monotonic()
    deadline = t1 + 600
    while sent_count(postfix) - before < deliveries:
        if time.monotonic() > deadline:
            raise RuntimeError('only %d of %d deliveries' % (sent_count(postfix) - before,
                                                             deliveries))
        time.sleep(0.2)
    t2 = time.monotonic()
    return messages / (t1 - t0), messages / (t2 - t0)


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def peak_rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return 0


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ('block', 'dlp', 'av', 'recall'):
        sys.stderr.write(__doc__)
        return 64
    which = sys.argv[1]
    messages = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    work = mkstack.make_workdir('mk-bench-')
    sink = milter = null = postfix = None
    others = []
    try:
        sink_port = mkstack.free_port()
        sink = mkstack.Daemon(['smtp-sink', '-u', 'postfix', '127.0.0.1:%d' % sink_port, '256'],
                              port=sink_port, workdir=work, name='smtp-sink')
        sink.start()
        mdir = os.path.join(work, which)
        os.makedirs(mdir)
        mport = mkstack.free_port()
        load = load_spec()
        postfix_main = {}
        if which != 'recall':
            write_lists(mdir)
        if which == 'block':
            argv = [BLOCK, '-f', '-c', write_config(mdir, mport)]
        elif which == 'dlp':
            argv = [DLP, '-f', '-c', write_dlp_config(mdir, mport)]
            load.message_file = write_dlp_message(mdir)
        elif which == 'av':
            db = write_av_db(mdir)
            argv = [AV, '-f', '-c', write_av_config(mdir, mport, db)]
            load.message_file = write_dlp_message(mdir)
            others = start_clamav_milter(work, db)
        else:
            argv = [RECALL, '-f', '-c', write_recall_config(mdir, mport)]
            load = load_spec(sender='bench@' + RECALL_DOMAIN,
                             recipient='colleague@' + RECALL_DOMAIN, rcpts=2,
                             subject='quarterly review')
            postfix_main['smtpd_command_filter'] = 'regexp:' + write_recall_command_filter(mdir)
        name = 'mailkeep-' + which
        milter = mkstack.Daemon(argv, port=mport, workdir=mdir, name=name)
        milter.start()
        nport = mkstack.free_port()
        null = mkstack.Daemon([NULL_MILTER, 'inet:%d@127.0.0.1' % nport]
                              + (['body'] if which in ('dlp', 'av') else []), port=nport,
                              workdir=work, name='null-milter')
        null.start()
        postfix = mkstack.Postfix(work, dovecot=None,
                                  sink=types.SimpleNamespace(host='127.0.0.1', port=sink_port),
                                  extra_main={'default_process_limit': '200',
                                              'smtpd_client_connection_count_limit': '0',
                                              'smtp_destination_concurrency_limit': '40',
                                              'queue_run_delay': '1s', **postfix_main})
        postfix.start()
        sockets = {'bare': '', 'null-milter': 'inet:127.0.0.1:%d' % nport,
                   name: 'inet:127.0.0.1:%d' % mport}
        if others:
            sockets['clamav-milter+clamd'] = others[1].socket
        results = {mode: [] for mode in sockets}
        # a short warm-up so that every mode starts with processes running
        run_once(postfix, 200, load)
        for mode in list(sockets) * 2:
            postfix.set_params(smtpd_milters=sockets[mode])
            accept, e2e = run_once(postfix, messages, load)
            results[mode].append((accept, e2e))
            print('%-15s accept %7.0f msg/s   end-to-end %7.0f msg/s' % (mode, accept, e2e),
                  flush=True)
        mean = {mode: [sum(r[i] for r in runs) / len(runs) for i in (0, 1)]
                for mode, runs in results.items()}
        bare, nul, filt = mean['bare'], mean['null-milter'], mean[name]
        if others:
            theirs = mean['clamav-milter+clamd']
            print()
            print('| %s vs clamav-milter + clamd | mailkeep-av | clamav-milter + clamd | ratio |' % which)
            print('|---|---|---|---|')
            for i, what in ((0, 'SMTP acceptance (msg/s)'), (1, 'end to end (msg/s)')):
                print('| %s | %.0f | %.0f | %.1f%% |' % (what, filt[i], theirs[i], 100 * filt[i] / theirs[i]))
            print('| peak RSS (MiB) | %.1f | %.1f (clamd %.1f + milter %.1f) | |' % (
                peak_rss_kib(milter.pid) / 1024,
                (peak_rss_kib(others[0].pid) + peak_rss_kib(others[1].pid)) / 1024,
                peak_rss_kib(others[0].pid) / 1024, peak_rss_kib(others[1].pid) / 1024))
            print('| CPU per 1,000 messages (s) | %.2f | %.2f | |' % (
                cpu_seconds(milter.pid) * 1000.0 / (2 * messages),
                (cpu_seconds(others[0].pid) + cpu_seconds(others[1].pid)) * 1000.0 / (2 * messages)))
            print()
        rss = peak_rss_kib(milter.pid)
        cpu = cpu_seconds(milter.pid)
        ncpu = cpu_seconds(null.pid)
        refusals = len(re.findall(r'milter-reject', postfix.log()))
        print()
        size = os.path.getsize(load.message_file) if load.message_file else SIZE
        print('| %d messages, %d sessions, %d bytes | bare Postfix | + null-milter | + %s '
              '| %s / bare | %s / null |' % (messages, SESSIONS, size, name, which, which))
        print('|---|---|---|---|---|---|')
        for i, what in ((0, 'SMTP acceptance (msg/s)'), (1, 'end to end, to smtp-sink (msg/s)')):
            print('| %s | %.0f | %.0f | %.0f | %.1f%% | %.1f%% |' % (
                what, bare[i], nul[i], filt[i], 100 * filt[i] / bare[i], 100 * filt[i] / nul[i]))
        per_k = 1000.0 / (2 * messages)      # the warm-up runs bare
        print('| filter CPU per 1,000 messages (s) | | %.2f | %.2f | | |' % (ncpu * per_k, cpu * per_k))
        print('| filter peak RSS (MiB) | | %.1f | %.1f | | |' % (peak_rss_kib(null.pid) / 1024, rss / 1024))
        print('\nmilter refusals during the run (must be 0): %d' % refusals)
        ok = refusals == 0
        if which == 'recall':
            milter.stop()       # SQLite checkpoints the WAL into the database on close
            print()
            ok = recall_db_report(os.path.join(mdir, 'recall.sqlite')) == 2 * messages and ok
        return 0 if ok else 1
    finally:
        for comp in [postfix, milter, null, sink] + others[::-1]:
            if comp is not None:
                comp.stop()
        mkstack._remove_workdir(work)


if __name__ == '__main__':
    sys.exit(main())
