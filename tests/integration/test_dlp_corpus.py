"""The detector corpus: every built-in detector, positives and near misses,
in UTF-8, Big5 and GB18030 bodies, in the subject, and inside every
attachment type, scanned by `mailkeep dlp scan` (the same extraction and
detectors as the milter). Needs no server."""
import base64
import io
import os
import re
import subprocess
import tempfile
import zipfile
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from milterenv import MAILKEEP

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


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def esc(text):
    return text.replace('&', '&amp;').replace('<', '&lt;')


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def docx(text):
    return zip_bytes([('[Content_Types].xml', '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
                      ('word/document.xml', '<?xml version="1.0" encoding="UTF-8"?><w:document %s><w:body>'
                       '<w:p><w:r><w:t xml:space="preserve">%s</w:t></w:r></w:p></w:body></w:document>'
                       % (W, esc(text)))])


def xlsx(text):
    s = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    return zip_bytes([('[Content_Types].xml', '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
                      ('xl/workbook.xml', '<workbook %s><sheets><sheet name="S" sheetId="1"/></sheets></workbook>' % s),
                      ('xl/sharedStrings.xml', '<?xml version="1.0" encoding="UTF-8"?><sst %s><si><t>%s</t></si></sst>'
                       % (s, esc(text))),
                      ('xl/worksheets/sheet1.xml', '<worksheet %s><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c>'
                       '</row></sheetData></worksheet>' % s)])


def pptx(text):
    a = ('xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
         'xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"')
    return zip_bytes([('[Content_Types].xml', '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
                      ('ppt/presentation.xml', '<p:presentation %s/>' % a),
                      ('ppt/slides/slide1.xml', '<?xml version="1.0" encoding="UTF-8"?><p:sld %s><p:cSld><p:spTree><p:sp>'
                       '<p:txBody><a:p><a:r><a:t>%s</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>'
                       % (a, esc(text)))])


ODF = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
       'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
       'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"')


def odf(mimetype, body):
    return zip_bytes([('mimetype', mimetype),
                      ('content.xml', '<?xml version="1.0" encoding="UTF-8"?><office:document-content %s>'
                       '<office:body>%s</office:body></office:document-content>' % (ODF, body))])


def odt(text):
    return odf('application/vnd.oasis.opendocument.text',
               '<office:text><text:p>%s</text:p></office:text>' % esc(text))


def ods(text):
    return odf('application/vnd.oasis.opendocument.spreadsheet',
               '<office:spreadsheet><table:table table:name="S"><table:table-row><table:table-cell '
               'office:value-type="string"><text:p>%s</text:p></table:table-cell></table:table-row>'
               '</table:table></office:spreadsheet>' % esc(text))


def pdf(text):
    """One page whose text is drawn with a CID font and a ToUnicode map, so
    any character, CJK included, can be extracted (no glyphs needed)."""
    chars = sorted(set(text) - {' '})
    cid = {c: i + 1 for i, c in enumerate(chars)}
    # Latin half an em wide, CJK a full em; a space is a gap, as PDF writers do.
    widths = ' '.join('%d' % (500 if ord(c) < 0x2E80 else 1000) for c in chars)
    words = ' -400 '.join('<%s>' % ''.join('%04X' % cid[c] for c in w) for w in text.split(' '))
    cmap = ('/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n'
            '/CMapName /Corpus def /CMapType 2 def\n'
            '1 begincodespacerange <0000> <FFFF> endcodespacerange\n'
            '%d beginbfchar\n%s\nendbfchar\nendcmap CMapName currentdict /CMap defineresource pop end end\n'
            % (len(chars), '\n'.join('<%04X> <%s>' % (cid[c], c.encode('utf-16-be').hex().upper())
                                     for c in chars)))
    content = 'BT /F1 12 Tf 72 720 Td [%s] TJ ET\n' % words
    objects = ['<< /Type /Catalog /Pages 2 0 R >>', '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
               '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R'
               ' /Resources << /Font << /F1 5 0 R >> >> >>',
               '<< /Length %d >>\nstream\n%sendstream' % (len(content), content),
               '<< /Type /Font /Subtype /Type0 /BaseFont /Corpus /Encoding /Identity-H'
               ' /DescendantFonts [6 0 R] /ToUnicode 7 0 R >>',
               '<< /Type /Font /Subtype /CIDFontType2 /BaseFont /Corpus'
               ' /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /DW 1000'
               ' /W [1 [%s]] >>' % widths,
               '<< /Length %d >>\nstream\n%sendstream' % (len(cmap), cmap)]
    out = b'%PDF-1.4\n'
    offsets = []
    for i, obj in enumerate(objects):
        offsets.append(len(out))
        out += b'%d 0 obj\n%s\nendobj\n' % (i + 1, obj.encode('latin-1'))
    xref = len(out)
    out += b'xref\n0 %d\n0000000000 65535 f \n' % (len(objects) + 1)
    for off in offsets:
        out += b'%010d 00000 n \n' % off
    out += b'trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n' % (len(objects) + 1, xref)
    return out


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
