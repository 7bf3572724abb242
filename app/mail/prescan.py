"""The charset an HTML document declares for itself, found as a browser finds it.

A text/html part without a charset parameter is decoded with the charset its own ``<meta>``
declares.  This is the HTML Living Standard's "prescan a byte stream to determine its encoding"
(§13.2.3.2), over the first 1024 bytes: comments are skipped (a ``<meta>`` commented out does not
count), ``<meta charset=...>`` counts, ``<meta content="...; charset=...">`` only together with
``http-equiv="content-type"``, and a declared UTF-16 means UTF-8 (a byte-oriented prescan could not
have read a UTF-16 document's declaration).  Only labels of the IANA charset registry are returned
(``app.mail.charsets.codec_for``), never a Python codec name.
"""

from __future__ import annotations

from .charsets import codec_for

PRESCAN_BYTES = 1024
_SPACE = b"\t\n\x0c\r "


def meta_charset(body: bytes) -> str | None:
    """The charset label the document declares in its first PRESCAN_BYTES bytes, or None."""
    data = body[:PRESCAN_BYTES]
    n = len(data)
    pos = 0
    while pos < n:
        if data.startswith(b"<!--", pos):
            end = data.find(b"-->", pos + 2)  # "<!-->" is a whole comment, as the standard says
            if end < 0:
                return None
            pos = end + 3
        elif data[pos : pos + 5].lower() == b"<meta" and pos + 5 < n and data[pos + 5] in _SPACE + b"/":
            label, pos = _meta(data, pos + 6)
            if label is not None:
                return label
        elif data.startswith(b"<", pos) and pos + 1 < n and (
            _alpha(data, pos + 1) or (data[pos + 1] == 0x2F and _alpha(data, pos + 2))
        ):
            pos += 1
            while pos < n and data[pos] not in _SPACE and data[pos] != 0x3E:  # the tag's name
                pos += 1
            while True:  # its attributes, read only to skip them
                attr, pos = _attribute(data, pos)
                if attr is None:
                    break
        elif data.startswith((b"<!", b"</", b"<?"), pos):
            end = data.find(b">", pos + 2)
            if end < 0:
                return None
            pos = end + 1
        else:
            pos += 1
    return None


def _alpha(data: bytes, i: int) -> bool:
    return i < len(data) and (0x41 <= data[i] <= 0x5A or 0x61 <= data[i] <= 0x7A)


def _meta(data: bytes, pos: int) -> tuple[str | None, int]:
    """The attributes of one ``<meta``: (the declared label if this element declares one, where
    the prescan goes on)."""
    seen: set[bytes] = set()
    got_pragma = False
    need_pragma: bool | None = None
    charset: bytes | None = None
    while True:
        attr, pos = _attribute(data, pos)
        if attr is None:
            break
        name, value = attr
        if name in seen:
            continue
        seen.add(name)
        if name == b"http-equiv":
            got_pragma = got_pragma or value == b"content-type"
        elif name == b"content" and charset is None:
            found = _charset_in_content(value)
            if found is not None:
                charset, need_pragma = found, True
        elif name == b"charset":
            charset, need_pragma = value, False
    if need_pragma is None or (need_pragma and not got_pragma) or charset is None:
        return None, pos
    label = charset.decode("ascii", "replace").strip()
    if label.lower() in ("utf-16", "utf-16be", "utf-16le"):
        label = "utf-8"
    elif label.lower() == "x-user-defined":
        label = "windows-1252"
    return (label if codec_for(label) else None), pos


def _attribute(data: bytes, pos: int) -> tuple[tuple[bytes, bytes] | None, int]:
    """"Get an attribute" (§13.2.3.2): ((lower-cased name, lower-cased value) or None at the
    tag's end, where reading goes on)."""
    n = len(data)
    while pos < n and (data[pos] in _SPACE or data[pos] == 0x2F):
        pos += 1
    if pos >= n or data[pos] == 0x3E:
        return None, pos
    start = pos
    pos += 1  # a name may start with "="
    while pos < n and data[pos] not in _SPACE and data[pos] not in b"/>=":
        pos += 1
    name = data[start:pos].lower()
    while pos < n and data[pos] in _SPACE:
        pos += 1
    if pos >= n or data[pos] != 0x3D:  # no "=": an attribute without a value
        return (name, b""), pos
    pos += 1
    while pos < n and data[pos] in _SPACE:
        pos += 1
    if pos < n and data[pos] in b"\"'":
        end = data.find(data[pos : pos + 1], pos + 1)
        if end < 0:
            return None, n
        return (name, data[pos + 1 : end].lower()), end + 1
    start = pos
    while pos < n and data[pos] not in _SPACE and data[pos] != 0x3E:
        pos += 1
    return (name, data[start:pos].lower()), pos


def _charset_in_content(value: bytes) -> bytes | None:
    """The standard's "algorithm for extracting a character encoding from a meta element": the
    charset of ``text/html; charset=koi8-r``."""
    pos = 0
    while True:
        i = value.find(b"charset", pos)
        if i < 0:
            return None
        pos = i + 7
        while pos < len(value) and value[pos] in _SPACE:
            pos += 1
        if pos < len(value) and value[pos] == 0x3D:
            break
    pos += 1
    while pos < len(value) and value[pos] in _SPACE:
        pos += 1
    if pos >= len(value):
        return None
    if value[pos] in b"\"'":
        end = value.find(value[pos : pos + 1], pos + 1)
        return value[pos + 1 : end] if end > 0 else None
    end = pos
    while end < len(value) and value[end] not in _SPACE and value[end] != 0x3B:
        end += 1
    return value[pos:end] or None
