"""Documents for the tests, built in memory with the standard library:
the Office and OpenDocument formats (a zip of XML parts) and PDF. Each
takes the text to carry, so that a test can put any content, personal
data included, in any container."""
import io
import struct
import zipfile
import zlib


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


def _crc_byte(crc, byte):
    return zlib.crc32(bytes([byte]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def _zipcrypto(data, password, crc):
    """PKWARE traditional encryption (APPNOTE 6.1), which zipfile reads but
    cannot write."""
    keys = [0x12345678, 0x23456789, 0x34567890]

    def update(byte):
        keys[0] = _crc_byte(keys[0], byte)
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = _crc_byte(keys[2], keys[1] >> 24)

    def stream_byte():
        t = (keys[2] | 2) & 0xFFFF
        return ((t * (t ^ 1)) >> 8) & 0xFF

    for b in password:
        update(b)
    out = bytearray()
    for b in bytes(range(11)) + bytes([crc >> 24]) + data:
        out.append(b ^ stream_byte())
        update(b)
    return bytes(out)


def encrypted_zip(name, data, password=b'password'):
    """A zip with one member encrypted with a password."""
    name = name.encode()
    crc = zlib.crc32(data)
    body = _zipcrypto(data, password, crc)
    local = struct.pack('<IHHHHHIIIHH', 0x04034B50, 20, 1, 0, 0, 0, crc, len(body), len(data),
                        len(name), 0) + name + body
    central = struct.pack('<IHHHHHHIIIHHHHHII', 0x02014B50, 20, 20, 1, 0, 0, 0, crc, len(body),
                          len(data), len(name), 0, 0, 0, 0, 0, 0) + name
    return local + central + struct.pack('<IHHHHIIH', 0x06054B50, 0, 0, 1, 1, len(central),
                                         len(local), 0)
