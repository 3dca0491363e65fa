"""The detector corpus: every built-in detector, positives and near misses,
in UTF-8, Big5 and GB18030 bodies, in the subject, and inside every
attachment type, scanned by `mailkeep dlp scan` (the same extraction and
detectors as the milter). Needs no server."""
import base64
import os
import re
import subprocess
import tempfile
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from milterenv import MAILKEEP
from mkdocs import docx, esc, ods, odt, pdf, pptx, xlsx, zip_bytes

# (detector, text, expected confidence or None for "not found")
SAMPLES = [
    ('tw_national_id', '身分證字號 A123456789', 'high'),
    ('tw_national_id', '身分證 Ａ１２３４５６７８９', 'high'),          # full-width
    ('tw_national_id', '編號 A123456789', 'medium'),
    ('tw_national_id', '身分證字號 A123456788', None),                 # bad checksum
    ('tw_national_id', '身分證字號 A1234567890', None),                # inside a longer run
    ('tw_resident_cert', '居留證號 AA12345675', 'high'),               # old format
    ('tw_resident_cert', '居留證號 A800000014', 'high'),               # 2021 format
    ('tw_resident_cert', '居留證號 AA12345674', None),
    ('tw_passport', '護照號碼 300123456', 'medium'),
    ('tw_passport', '訂單編號 300123456', None),                       # no keyword, no match
    ('tw_phone', '手機 0912-345-678', 'high'),
    ('tw_phone', '電話 +886 912 345 678', 'high'),
    ('tw_phone', '電話 0912-345-6789', None),                          # one digit too many
    ('payment_card', '卡號 4111 1111 1111 1111', 'high'),
    ('payment_card', '卡號 4111-1111-1111-1112', None),                # Luhn fails
    ('payment_card', '序號 41111111111111110000', None),               # inside a longer run
    ('iban', 'IBAN DE89 3704 0044 0532 0130 00', 'high'),
    ('iban', 'IBAN DE89 3704 0044 0532 0130 01', None),                # mod 97 fails
    ('email', '電子郵件 chen.yi@corp.example.tw', 'high'),
    ('email', '電子郵件 chen.yi@localhost', None),
]

CONTAINERS = ['body-utf8', 'body-big5', 'body-gb18030', 'subject', 'html', 'docx', 'xlsx',
              'pptx', 'odt', 'ods', 'pdf', 'csv', 'zip', 'message']


OFFICE = {
    'docx': ('vnd.openxmlformats-officedocument.wordprocessingml.document', docx),
    'xlsx': ('vnd.openxmlformats-officedocument.spreadsheetml.sheet', xlsx),
    'pptx': ('vnd.openxmlformats-officedocument.presentationml.presentation', pptx),
    'odt': ('vnd.oasis.opendocument.text', odt),
    'ods': ('vnd.oasis.opendocument.spreadsheet', ods),
    'pdf': ('pdf', pdf),
}


def build(container, text):
    """A message carrying text in the given container."""
    outer = MIMEMultipart()
    outer['From'] = 'Sender <s@example.com>'
    outer['To'] = 'r@example.net'
    outer['Subject'] = 'corpus'
    if container.startswith('body-'):
        charset = container[5:].replace('utf8', 'utf-8')
        part = MIMEText('', 'plain', charset)
        part.set_payload(base64.encodebytes(('附件請查收。\n' + text + '\n').encode(charset)).decode())
        del part['Content-Transfer-Encoding']
        part['Content-Transfer-Encoding'] = 'base64'
        outer.attach(part)
    elif container == 'subject':
        del outer['Subject']
        outer['Subject'] = text
        outer.attach(MIMEText('hello', 'plain', 'utf-8'))
    elif container == 'html':
        outer.attach(MIMEText('<html><body><p>%s</p></body></html>' % esc(text), 'html', 'utf-8'))
    elif container in OFFICE:
        subtype, maker = OFFICE[container]
        outer.attach(MIMEText('see attachment', 'plain', 'utf-8'))
        att = MIMEApplication(maker(text), subtype)
        att.add_header('Content-Disposition', 'attachment', filename='file.' + container)
        outer.attach(att)
    elif container == 'csv':
        att = MIMEApplication(('name,note\nchen,%s\n' % text).encode('utf-8'), 'octet-stream')
        att.add_header('Content-Disposition', 'attachment', filename='list.csv')
        outer.attach(att)
    elif container == 'zip':
        inner = zip_bytes([('docs/report.docx', docx(text))])
        att = MIMEApplication(zip_bytes([('outer/inner.zip', inner)]), 'zip')
        att.add_header('Content-Disposition', 'attachment', filename='bundle.zip')
        outer.attach(att)
    elif container == 'message':
        inner = EmailMessage()
        inner['From'] = 'x@example.org'
        inner['Subject'] = 'fwd'
        inner.set_content(text)
        outer.attach(MIMEMessage(inner))
    return outer.as_bytes()


CONFIG = None


def scan(data):
    global CONFIG
    if CONFIG is None:
        fd, CONFIG = tempfile.mkstemp(prefix='mk-corpus-', suffix='.conf')
        os.write(fd, b'[dlp]\n')
        os.close(fd)
    with tempfile.NamedTemporaryFile(prefix='mk-corpus-', suffix='.eml') as f:
        f.write(data)
        f.flush()
        r = subprocess.run([MAILKEEP, '-c', CONFIG, 'dlp', 'scan', '-m', f.name],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), r.stderr
    return r.stdout


def counts(output, detector):
    m = re.search(r'^%s: high (\d+), medium (\d+), low (\d+)$' % detector, output, re.M)
    return {'high': int(m.group(1)), 'medium': int(m.group(2)), 'low': int(m.group(3))} if m \
        else {'high': 0, 'medium': 0, 'low': 0}


@pytest.mark.parametrize('container', CONTAINERS)
@pytest.mark.parametrize('detector,text,confidence', SAMPLES,
                         ids=['%s-%d' % (s[0], i) for i, s in enumerate(SAMPLES)])
def test_corpus(container, detector, text, confidence):
    if container in ('body-big5',):
        try:
            text.encode('big5')
        except UnicodeEncodeError:
            pytest.fail('corpus text not representable in Big5: %r' % text)
    out = scan(build(container, text))
    found = counts(out, detector)
    if confidence is None:
        assert found == {'high': 0, 'medium': 0, 'low': 0}, out
        assert 'unscannable' not in out, out
    else:
        assert found[confidence] == 1 and sum(found.values()) == 1, out
    assert 'A123456789' not in out and '4111 1111 1111 1111' not in out
