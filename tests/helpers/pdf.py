"""Read back what a reportlab PDF prints: its text (through each font's encoding) and images.

No PDF library is locked, so this reads the uncompressed PDFs reportlab writes with
``pageCompression=0``: the text operators of each page, decoded with the font's ToUnicode
map (embedded TrueType subsets), UCS-2 (CID fonts with a ``-UCS2-H`` encoding) or cp1252
(the standard Type 1 fonts).
"""

from __future__ import annotations

import base64
import re
import zlib

_OBJECT = re.compile(rb"(\d+) 0 obj(.*?)endobj", re.S)


def _objects(pdf: bytes) -> dict[int, bytes]:
    return {int(number): body for number, body in _OBJECT.findall(pdf)}


def _stream(body: bytes) -> bytes:
    """The decoded data of a stream object (reportlab writes a direct /Length)."""
    start = re.search(rb"stream\r?\n", body)
    length = re.search(rb"/Length (\d+)", body)
    if start is None or length is None:
        return b""
    data = body[start.end() : start.end() + int(length.group(1))]
    head = body[: start.start()]
    if b"/ASCII85Decode" in head:
        data = base64.a85decode(data.strip(), adobe=data.strip().startswith(b"<~"))
    return zlib.decompress(data) if b"/FlateDecode" in head else data


def _hex(token: bytes) -> int:
    return int(token[1:-1], 16)


def _unicode(digits: str) -> str:
    """A ToUnicode destination: UTF-16BE, or (as reportlab writes beyond the BMP) a code point."""
    if len(digits) % 4 == 0:
        try:
            return bytes.fromhex(digits).decode("utf-16-be")
        except UnicodeDecodeError:
            pass
    return chr(int(digits, 16))


def _to_unicode(cmap: bytes) -> dict[int, str]:
    table: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
        for code, text in re.findall(rb"(<[0-9A-Fa-f]+>)\s*(<[0-9A-Fa-f]+>)", block):
            table[_hex(code)] = _unicode(text[1:-1].decode())
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
        for low, high, start in re.findall(
            rb"(<[0-9A-Fa-f]+>)\s*(<[0-9A-Fa-f]+>)\s*(<[0-9A-Fa-f]+>)", block
        ):
            for offset in range(_hex(high) - _hex(low) + 1):
                table[_hex(low) + offset] = chr(_hex(start) + offset)
    return table


def _decoders(objects: dict[int, bytes]):  # type: ignore[no-untyped-def]
    """Font resource name -> a function from string bytes to text."""
    decoders = {}
    for body in objects.values():
        if b"/Type /Font" not in body or b"/Name /" not in body:
            continue
        name = re.search(rb"/Name /([^\s/>\]]+)", body).group(1).decode()  # type: ignore[union-attr]
        to_unicode = re.search(rb"/ToUnicode (\d+) 0 R", body)
        if to_unicode:
            table = _to_unicode(_stream(objects[int(to_unicode.group(1))]))
            decoders[name] = lambda raw, t=table: "".join(t.get(b, "\ufffd") for b in raw)
        elif re.search(rb"/Encoding /\S*UCS2-H", body):
            decoders[name] = lambda raw: raw.decode("utf-16-be", "replace")
        else:
            decoders[name] = lambda raw: raw.decode("cp1252", "replace")
    return decoders


class _Text(str):
    """A decoded string operand (font names and other operands are plain ``str``)."""


_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def _literal(content: bytes, start: int) -> tuple[bytes, int]:
    """The bytes of the ``(...)`` string starting at ``content[start]``, and the end index."""
    out = bytearray()
    depth, pos = 1, start + 1
    while depth:
        char = content[pos : pos + 1]
        if char == b"\\":
            following = content[pos + 1 : pos + 2]
            octal = re.match(rb"[0-7]{1,3}", content[pos + 1 : pos + 4])
            if octal:
                out.append(int(octal.group(0), 8) & 0xFF)
                pos += 1 + len(octal.group(0))
                continue
            out += _ESCAPES.get(following, following)
            pos += 2
            continue
        depth += {b"(": 1, b")": -1}.get(char, 0)
        if depth:
            out += char
        pos += 1
    return bytes(out), pos


_TOKEN = re.compile(rb"\(|<[0-9A-Fa-f\s]*>|/[^\s/\[\]()<>]+|[A-Za-z'\"*]+|-?[\d.]+|\[|\]")


def pdf_text(pdf: bytes) -> str:
    """The text a reader would see, one line per text line, in content-stream order."""
    objects = _objects(pdf)
    decoders = _decoders(objects)
    lines: list[str] = []
    for body in objects.values():
        if b"/Type /Page" not in body or b"/Contents" not in body:
            continue
        contents = re.search(rb"/Contents (\d+) 0 R", body)
        content = _stream(objects[int(contents.group(1))]) if contents else b""  # type: ignore[union-attr]
        decode = decoders.get("F1", lambda raw: raw.decode("latin-1"))
        operands: list[object] = []
        line = ""
        pos = 0
        while True:
            match = _TOKEN.search(content, pos)
            if match is None:
                break
            token = match.group(0)
            pos = match.end()
            if token == b"(":
                raw, pos = _literal(content, match.start())
                operands.append(_Text(decode(raw)))
            elif token.startswith(b"<"):
                operands.append(_Text(decode(bytes.fromhex(token[1:-1].decode()))))
            elif token.startswith(b"/"):
                operands.append(token[1:].decode())
            elif token == b"Tf":
                names = [op for op in operands if isinstance(op, str) and not isinstance(op, _Text)]
                decode = decoders.get(names[-1], decode) if names else decode
                operands.clear()
            elif token in (b"Tj", b"TJ", b"'", b'"'):
                line += "".join(op for op in operands if isinstance(op, _Text))
                operands.clear()
            elif token in (b"T*", b"Td", b"TD", b"ET", b"Tm"):
                if line.strip():
                    lines.append(line)
                line = ""
                operands.clear()
            elif token not in (b"[", b"]") and not re.fullmatch(rb"-?[\d.]+", token):
                operands.clear()
    return "\n".join(lines)


def images(pdf: bytes) -> list[tuple[int, int]]:
    """(width, height) in pixels of every image XObject."""
    return [
        (int(w), int(h))
        for body in _objects(pdf).values()
        if b"/Subtype /Image" in body
        for w, h in [
            (
                re.search(rb"/Width (\d+)", body).group(1),  # type: ignore[union-attr]
                re.search(rb"/Height (\d+)", body).group(1),  # type: ignore[union-attr]
            )
        ]
    ]
