#!/usr/bin/python3
"""Write the fixtures of test-mime into the directory given: messages in
many charsets, office documents, a PDF, archives good and hostile.

    make-mime-fixtures.py DIR

Standard library only, so that the unit tests need nothing more than
Python 3. The documents are the smallest files their readers accept,
written here from the formats' specifications (ECMA-376, ODF 1.2, PDF
1.4, PKWARE APPNOTE) rather than by an office suite.
"""

import base64
import io
import os
import quopri
import struct
import sys
import tarfile
import zipfile
import zlib

ID = "A123456789"           # a well-formed Taiwanese national ID number
SHENFENZHENG = "身分證"      # "identity card", in traditional characters


def write(dirname, name, data):
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def b64(data):
    return base64.encodebytes(data)


def rfc2047(text, charset):
    return "=?%s?B?%s?=" % (charset, base64.b64encode(text.encode(charset)).decode())


def message(headers, body, content_type="text/plain", charset=None, cte="8bit"):
    """A single-part message, bytes exactly as given: the email package
    would re-encode what we want to show as it is on the wire."""
    ct = content_type + ('; charset="%s"' % charset if charset else "")
    head = b"".join(h.encode("latin-1") if isinstance(h, str) else h for h in headers)
    if cte == "base64":
        body = b64(body)
    elif cte == "quoted-printable":
        body = quopri.encodestring(body)
    return (head + b"MIME-Version: 1.0\r\nContent-Type: " + ct.encode()
            + b"\r\nContent-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body)


def std_headers(subject="test"):
    return ["From: Sender <sender@example.com>\r\n", "To: rcpt@example.com\r\n",
            "Subject: %s\r\n" % subject, "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
            "Message-ID: <fixture@example.com>\r\n"]


# ----------------------------------------------------------- documents

def zip_bytes(members, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members:
            # ODF wants its mimetype first and stored
            z.writestr(name, data, zipfile.ZIP_STORED if name == "mimetype" else compression)
    return buf.getvalue()


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
CORE = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>%s</dc:title>'
        '<dc:creator>HR</dc:creator></cp:coreProperties>')


def docx():
    para = lambda text: '<w:p><w:r><w:t xml:space="preserve">%s</w:t></w:r></w:p>' % text
    body = (para("%s字號 %s" % (SHENFENZHENG, ID))
            + '<w:p><w:r><w:t>tab</w:t><w:tab/><w:t>bed</w:t></w:r></w:p>'
            + '<w:tbl><w:tr><w:tc>%s</w:tc><w:tc>%s</w:tc></w:tr></w:tbl>'
            % (para("cell one"), para("cell two")))
    return zip_bytes([
        ("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
        ("word/document.xml", '<?xml version="1.0" encoding="UTF-8"?><w:document %s><w:body>%s</w:body></w:document>' % (W, body)),
        ("word/header1.xml", '<?xml version="1.0"?><w:hdr %s>%s</w:hdr>' % (W, para("Header text"))),
        ("word/footer1.xml", '<?xml version="1.0"?><w:ftr %s>%s</w:ftr>' % (W, para("Footer text"))),
        ("word/comments.xml", '<?xml version="1.0"?><w:comments %s><w:comment w:id="0">%s</w:comment></w:comments>' % (W, para("Comment text"))),
        ("word/styles.xml", '<?xml version="1.0"?><w:styles %s><w:style><w:name w:val="not text"/></w:style></w:styles>' % W),
        ("docProps/core.xml", CORE % "Docx title"),
    ])


def xlsx():
    s = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    sheet = ('<?xml version="1.0" encoding="UTF-8"?><worksheet %s><sheetData>'
             '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1"><v>987654321</v></c>'
             '<c r="C1" t="inlineStr"><is><t>inline %s</t></is></c><c r="D1" t="b"><v>1</v></c></row>'
             '<row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2"><f>B1*2</f><v>1975308642</v></c></row>'
             '</sheetData></worksheet>') % (s, ID)
    return zip_bytes([
        ("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
        ("xl/workbook.xml", '<?xml version="1.0"?><workbook %s><sheets><sheet name="Salaries" sheetId="1"/></sheets></workbook>' % s),
        ("xl/sharedStrings.xml", '<?xml version="1.0" encoding="UTF-8"?><sst %s count="2" uniqueCount="2">'
         '<si><t>%s</t></si><si><r><t>rich </t></r><r><t>text</t></r></si></sst>' % (s, SHENFENZHENG)),
        ("xl/worksheets/sheet1.xml", sheet),
        ("docProps/core.xml", CORE % "Salaries 2024"),
    ])


def pptx():
    a = ('xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
         ' xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"')
    slide = ('<?xml version="1.0"?><p:sld %s><p:cSld><p:spTree><p:sp><p:txBody>'
             '<a:p><a:r><a:t>Slide title</a:t></a:r></a:p><a:p><a:r><a:t>%s</a:t></a:r></a:p>'
             '</p:txBody></p:sp></p:spTree></p:cSld></p:sld>') % (a, ID)
    notes = ('<?xml version="1.0"?><p:notes %s><p:cSld><p:spTree><p:sp><p:txBody>'
             '<a:p><a:r><a:t>Speaker notes</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:notes>') % a
    return zip_bytes([
        ("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
        ("ppt/presentation.xml", '<?xml version="1.0"?><p:presentation %s/>' % a),
        ("ppt/slides/slide1.xml", slide),
        ("ppt/notesSlides/notesSlide1.xml", notes),
        ("ppt/slideLayouts/slideLayout1.xml", '<?xml version="1.0"?><p:sldLayout %s><a:t>layout, not text</a:t></p:sldLayout>' % a),
    ])


ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
          ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
          ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
          ' xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"')


def odf(mimetype, body, styles=""):
    manifest = ('<?xml version="1.0"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                '<manifest:file-entry manifest:full-path="/" manifest:media-type="%s"/></manifest:manifest>' % mimetype)
    return zip_bytes([
        ("mimetype", mimetype),
        ("META-INF/manifest.xml", manifest),
        ("content.xml", '<?xml version="1.0" encoding="UTF-8"?><office:document-content %s><office:body>%s</office:body></office:document-content>' % (ODF_NS, body)),
        ("styles.xml", '<?xml version="1.0"?><office:document-styles %s><office:master-styles>%s</office:master-styles></office:document-styles>' % (ODF_NS, styles)),
    ])


def odt():
    return odf("application/vnd.oasis.opendocument.text",
               '<office:text><text:h>ODT heading</text:h><text:p>%s<text:s/>%s</text:p></office:text>' % (SHENFENZHENG, ID),
               '<style:master-page><style:header><text:p>ODT header</text:p></style:header></style:master-page>')


def ods():
    return odf("application/vnd.oasis.opendocument.spreadsheet",
               '<office:spreadsheet><table:table table:name="S"><table:table-row>'
               '<table:table-cell office:value-type="string"><text:p>ODS cell</text:p></table:table-cell>'
               '<table:table-cell office:value-type="float" office:value="42"><text:p>42</text:p></table:table-cell>'
               '</table:table-row></table:table></office:spreadsheet>')


def pdf(encrypted=False):
    """One page of text in Helvetica. The second font is a Type 0 font
    with no glyphs but a ToUnicode map, so the page's CJK text can be
    extracted though it cannot be drawn."""
    cjk = SHENFENZHENG
    cmap = ("/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
            "/CMapName /Fixture def /CMapType 2 def\n"
            "1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
            "%d beginbfchar\n%s\nendbfchar\nendcmap CMapName currentdict /CMap defineresource pop end end\n"
            % (len(cjk), "\n".join("<%04X> <%04X>" % (i + 1, ord(c)) for i, c in enumerate(cjk))))
    cids = "".join("%04X" % (i + 1) for i in range(len(cjk)))
    content = ("BT /F1 12 Tf 72 720 Td (PDF text %s) Tj ET\n"
               "BT /F2 12 Tf 72 700 Td <%s> Tj ET\n" % (ID, cids))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        " /Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> >>",
        "<< /Length %d >>\nstream\n%sendstream" % (len(content), content),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        "<< /Type /Font /Subtype /Type0 /BaseFont /Fixture /Encoding /Identity-H"
        " /DescendantFonts [7 0 R] /ToUnicode 8 0 R >>",
        "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /Fixture"
        " /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /DW 1000 >>",
        "<< /Length %d >>\nstream\n%sendstream" % (len(cmap), cmap),
        "<< /Title (PDF title) >>",
    ]
    if encrypted:
        # A standard security handler whose user password is not empty:
        # a reader without the password gets nothing.
        objects.append("<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>"
                       % ("11" * 32, "22" * 32))
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for i, obj in enumerate(objects):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i + 1, obj.encode("latin-1"))
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    trailer = "<< /Size %d /Root 1 0 R /Info 9 0 R" % (len(objects) + 1)
    if encrypted:
        trailer += " /Encrypt 10 0 R /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>]"
    out += b"trailer\n%s >>\nstartxref\n%d\n%%%%EOF\n" % (trailer.encode(), xref)
    return out


# ------------------------------------------------------------ archives

def crc_byte(crc, byte):
    """CRC-32 of one more byte, without zlib's pre- and post-inversion."""
    return zlib.crc32(bytes([byte]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def zipcrypto(data, password, crc):
    """PKWARE traditional encryption (APPNOTE 6.1), which zipfile reads
    but cannot write."""
    keys = [0x12345678, 0x23456789, 0x34567890]

    def update(byte):
        keys[0] = crc_byte(keys[0], byte)
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = crc_byte(keys[2], keys[1] >> 24)

    def stream_byte():
        t = (keys[2] | 2) & 0xFFFF
        return ((t * (t ^ 1)) >> 8) & 0xFF

    for b in password:
        update(b)
    out = bytearray()
    header = bytes(range(11)) + bytes([crc >> 24])
    for b in header + data:
        out.append(b ^ stream_byte())
        update(b)
    return bytes(out)


def encrypted_zip():
    members = [(b"secret.txt", ("%s in a locked file\n" % ID).encode(), True),
               (b"readme.txt", b"open text\n", False)]
    local, central = b"", b""
    for name, data, locked in members:
        crc = zlib.crc32(data)
        body = zipcrypto(data, b"password", crc) if locked else data
        flags = 1 if locked else 0
        offset = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 0, 0, 0, crc,
                             len(body), len(data), len(name), 0) + name + body
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, 0, 0, 0, crc,
                               len(body), len(data), len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                      len(central), len(local), 0)
    return local + central + end


def zip_bomb():
    return zip_bytes([("zeros.txt", b"\0" * (20 << 20)), ("after.txt", "after the bomb %s\n" % ID)])


def nested_zip():
    inner = zip_bytes([("report.docx", docx()), ("薪資.txt", "inner text %s\n" % ID)])
    return zip_bytes([("inner.zip", inner), ("top.txt", "top level\n")])


def tar_gz():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = ("tar member %s\n" % ID).encode()
        info = tarfile.TarInfo("notes.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
       b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00"
       b"\x00IEND\xaeB`\x82")


# ------------------------------------------------------------ messages

def mixed(parts, headers=None, boundary="=_b1"):
    """A multipart/mixed message from (headers, body) pairs given as bytes."""
    out = b"".join(h.encode() for h in (headers or std_headers("attachments")))
    out += b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="%s"\r\n\r\n' % boundary.encode()
    out += b"This is a multi-part message in MIME format.\r\n"
    for head, body in parts:
        out += b"--%s\r\n%s\r\n%s\r\n" % (boundary.encode(), head, body)
    return out + b"--%s--\r\n" % boundary.encode()


def attachment(filename_header, content_type, data):
    return (b"Content-Type: " + content_type.encode() + b"\r\nContent-Transfer-Encoding: base64\r\n"
            + b"Content-Disposition: attachment; " + filename_header.encode() + b"\r\n", b64(data))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)

    # headers: RFC 2047 in Big5 and UTF-8, undeclared 8-bit Big5 and UTF-8
    write(out, "headers.eml", message(
        ["From: %s <wang@example.com>\r\n" % rfc2047("王小明", "utf-8"),
         "To: %s <a@example.com>, plain@example.com,\r\n Team: %s <b@example.com>;\r\n"
         % (rfc2047("陳大文", "big5"), rfc2047("林美玲", "utf-8")),
         "Subject: %s\r\n" % rfc2047("薪資單 %s" % SHENFENZHENG, "big5"),
         "Comments: %s\r\n" % rfc2047("備註 " + ID, "utf-8"),
         b"Keywords: \xe8\x96\xaa\xe8\xb3\x87\r\n",                       # 薪資, raw UTF-8
         b"Organization: " + "人事室".encode("big5") + b"\r\n",           # raw Big5
         "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <h@example.com>\r\n"],
        b"plain body\r\n"))
    write(out, "subject-utf8.eml", message(
        std_headers(rfc2047("%s號碼 %s" % (SHENFENZHENG, ID), "utf-8"))[:2]
        + ["Subject: %s\r\n" % rfc2047("%s號碼 %s" % (SHENFENZHENG, ID), "utf-8")],
        b"x\r\n"))

    # bodies: one charset each, through both transfer encodings
    text = "%s字號 %s\n" % (SHENFENZHENG, ID)
    bodies = [
        ("body-utf8.eml", text.encode("utf-8"), "utf-8", "quoted-printable"),
        ("body-big5.eml", text.encode("big5"), "big5", "base64"),
        ("body-big5hkscs.eml", "嘅 %s\n".encode("big5hkscs") % ID.encode(), "big5-hkscs", "base64"),
        ("body-gb18030.eml", "身份证号码 %s €\n".encode("gb18030") % ID.encode(), "gb18030", "base64"),
        ("body-gb2312.eml", "身份证号码 %s\n".encode("gb2312") % ID.encode(), "gb2312", "8bit"),
        ("body-iso2022jp.eml", "個人番号 %s\n".encode("iso-2022-jp") % ID.encode(), "iso-2022-jp", "7bit"),
        ("body-utf16.eml", ("\ufeff" + text).encode("utf-16-le"), "utf-16", "base64"),
        ("body-cp1252.eml", "Caf\u00e9 \u201cquoted\u201d \u20ac5\n".encode("cp1252"), "windows-1252", "quoted-printable"),
        ("body-wrong.eml", text.encode("big5"), "us-ascii", "8bit"),
        ("body-missing.eml", text.encode("big5"), None, "8bit"),
        ("body-unknown.eml", text.encode("utf-8"), "x-no-such-charset", "base64"),
        ("body-latin1-utf8.eml", "Café 身分證\n".encode("utf-8"), "iso-8859-1", "8bit"),
    ]
    for name, data, charset, cte in bodies:
        write(out, name, message(std_headers(), data, charset=charset, cte=cte))

    html = ('<!DOCTYPE html><html><head><title>Page title</title><style>p { color: red }</style>'
            '<script>var hidden = "script text";</script></head><body>'
            '<p>Caf&eacute; &amp; %s</p><div>%s</div><p>one<br>two</p>'
            '<table><tr><td>a</td><td>b</td></tr></table></body></html>') % (SHENFENZHENG, ID)
    write(out, "html.eml", message(std_headers(), html.encode("big5", "xmlcharrefreplace"),
                                   "text/html", "big5", "quoted-printable"))
    alt = (b"".join(h.encode() for h in std_headers("alternative"))
           + b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n'
           + b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain version\r\n"
           + b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html &lt;version&gt;</p>\r\n"
           + b"--alt--\r\n")
    write(out, "alternative.eml", alt)

    # documents, alone and attached
    files = {"report.docx": docx(), "salary.xlsx": xlsx(), "slides.pptx": pptx(),
             "letter.odt": odt(), "sheet.ods": ods(), "doc.pdf": pdf(),
             "locked.pdf": pdf(encrypted=True), "encrypted.zip": encrypted_zip(),
             "bomb.zip": zip_bomb(), "nested.zip": nested_zip(), "notes.tar.gz": tar_gz(),
             "people.csv": "姓名,身分證字號\n王小明,%s\n".encode("big5") % ID.encode()}
    for name, data in files.items():
        write(out, name, data)

    ooxml = "application/vnd.openxmlformats-officedocument."
    write(out, "attachments.eml", mixed([
        (b"Content-Type: text/plain; charset=utf-8\r\n", b"see attached\r\n"),
        attachment('filename="salary.xlsx"', ooxml + "spreadsheetml.sheet", files["salary.xlsx"]),
        # Outlook's way: an RFC 2047 word in a quoted parameter
        attachment('filename="%s"' % rfc2047("報告.docx", "big5"), ooxml + "wordprocessingml.document", files["report.docx"]),
        attachment('filename="slides.pptx"', ooxml + "presentationml.presentation", files["slides.pptx"]),
        attachment('filename="letter.odt"', "application/vnd.oasis.opendocument.text", files["letter.odt"]),
        attachment('filename="sheet.ods"', "application/octet-stream", files["sheet.ods"]),
        attachment('filename="doc.pdf"', "application/pdf", files["doc.pdf"]),
        # RFC 2231, and a type that lies: the content is CSV in Big5
        attachment("filename*=utf-8''%E5%90%8D%E5%96%AE.csv", "application/octet-stream", files["people.csv"]),
        attachment('filename="pixel.png"', "image/png", PNG),
    ]))
    write(out, "archives.eml", mixed([
        (b"Content-Type: text/plain\r\n", b"archives\r\n"),
        attachment('filename="nested.zip"', "application/zip", files["nested.zip"]),
        attachment('filename="encrypted.zip"', "application/zip", files["encrypted.zip"]),
        attachment('filename="bomb.zip"', "application/zip", files["bomb.zip"]),
        attachment('filename="locked.pdf"', "application/pdf", files["locked.pdf"]),
        attachment('filename="notes.tar.gz"', "application/gzip", files["notes.tar.gz"]),
    ]))

    # a forwarded message that has an attachment of its own
    inner = mixed([(b"Content-Type: text/plain\r\n", b"inner body\r\n"),
                   attachment('filename="inner.txt"', "text/plain", ("inner file %s\n" % ID).encode())],
                  std_headers("inner subject"), "=_inner")
    write(out, "forward.eml", mixed([
        (b"Content-Type: text/plain\r\n", b"outer body\r\n"),
        (b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n", inner)],
        std_headers("outer subject")))

    # nesting deeper than the default limit of 8
    depth = 12
    deep = b"".join(h.encode() for h in std_headers("deep")) + b"MIME-Version: 1.0\r\n"
    tail = b""
    for level in range(1, depth + 1):
        deep += (b'Content-Type: multipart/mixed; boundary="L%d"\r\n\r\n--L%d\r\n'
                 b"Content-Type: text/plain\r\n\r\nlevel %d\r\n--L%d\r\n" % (level, level, level, level))
        tail = b"--L%d--\r\n" % level + tail
    deep += b"Content-Type: text/plain\r\n\r\nbottom\r\n" + tail
    write(out, "deep.eml", deep)

    # malformed: a multipart without a boundary, and one whose boundary never comes
    write(out, "malformed.eml", b"".join(h.encode() for h in std_headers("malformed"))
          + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n"
          + b"--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
          + b64(("hidden %s\n" % ID).encode()) + b"--x--\r\n")
    write(out, "unterminated.eml", b"".join(h.encode() for h in std_headers("unterminated"))
          + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="never"\r\n\r\n'
          + b"text before a boundary that never comes %s\r\n" % ID.encode())


if __name__ == "__main__":
    main()
