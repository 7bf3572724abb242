"""Body parts decoded piecewise (app.mail.mime.transfer_decoder, app.blob.parts): the octets equal
extract_part's for every part, wherever the pieces are cut."""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
from pathlib import Path

import pytest

from app.blob import parts
from app.mail import mime

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mime"
CUTS = [1, 2, 3, 4, 5, 7, 13, 64, 1000]


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def random_pieces(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.choice([0, 1, 1, 2, 3, 5, 17, 100])
        out.append(data[i : i + n])
        i += n
    return out


def streamed(cte: str, chunks: list[bytes]) -> bytes:
    d = mime.transfer_decoder(cte)
    return b"".join(d.feed(c) for c in chunks) + d.finish()


def whole(cte: str, body: bytes) -> bytes:
    return mime._transfer_decode(body, cte)[0]


def fuzz_bodies(alphabet: bytes, n: int, seed: int, max_len: int = 300) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.choice(alphabet) for _ in range(rng.randrange(max_len))) for _ in range(n)]


@pytest.mark.parametrize("cte,alphabet", [
    ("base64", b"QUJDRGVmZ2g0NTY3+/==\r\n \t!-"),
    ("base64", b"QQ==\r\n"),
    ("quoted-printable", b"=\r\n \tA4fgz=="),
    ("quoted-printable", b"=\r\nA41"),
    ("x-uuencode", b"\r\n begin 644 x`M&5N9$$!end"),
    ("7bit", b"abc\r\n\x00\xff"),
    ("x-unknown", b"abc\r\n"),
])
def test_piecewise_decoding_equals_whole_decoding(cte, alphabet):
    rng = random.Random(cte)
    for i, body in enumerate(fuzz_bodies(alphabet, 400, hash((cte, alphabet)) & 0xFFFF)):
        expected = whole(cte, body)
        for size in CUTS:
            assert streamed(cte, pieces(body, size)) == expected, (body, size)
        assert streamed(cte, random_pieces(body, rng)) == expected, (body, i)


def test_uudecode_pieces_of_a_real_encoding():
    data = bytes(range(256)) * 9
    body = b"begin 644 f.bin\r\n" + binascii.b2a_uu(data[:45]) + b"".join(
        binascii.b2a_uu(data[i : i + 45]).replace(b"\n", b"\r\n") for i in range(45, len(data), 45)) + b"`\r\nend\r\n"
    assert whole("x-uuencode", body) == data
    for size in CUTS:
        assert streamed("x-uuencode", pieces(body, size)) == data


def test_base64_of_a_big_body_across_line_breaks():
    data = random.Random(1).randbytes(200_003)
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    for size in (1, 3, 75, 76, 77, 4096, 65536):
        assert streamed("base64", pieces(body, size)) == data


@pytest.mark.parametrize("long_line", [4, 9, 64])
def test_quoted_printable_lines_longer_than_the_cut_length(monkeypatch, long_line):
    monkeypatch.setattr(mime, "_QP_LONG", long_line)
    rng = random.Random(long_line)
    for body in fuzz_bodies(b"=\r\nA4f g==", 600, long_line, 200) + fuzz_bodies(b"=\rA4f", 300, 7, 200):
        expected = whole("quoted-printable", body)
        for size in (1, 2, 3, 5, 11, 40):
            assert streamed("quoted-printable", pieces(body, size)) == expected, (body, size)
        assert streamed("quoted-printable", random_pieces(body, rng)) == expected, body


# ------------------------------------------------------------------- parts of stored message files
def leaf_ids(raw: bytes) -> list[str]:
    root, _ = mime._parse(raw)
    return [p.part_id for p in mime._leaves(root)]


def read_part(path: Path, part_id: str, read_size: int = -1) -> tuple[bytes, str, str | None] | None:
    f = open(path, "rb")
    opened = parts.open_part(f, "P" + "0" * 64 + "." + part_id, part_id)
    if opened is None:
        return None
    pf, media_type, name = opened
    with pf:
        if read_size < 0:
            return pf.read(), media_type, name
        out = []
        while chunk := pf.read(read_size):
            out.append(chunk)
        return b"".join(out), media_type, name


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.eml")))
def test_every_part_of_the_fixtures_streams_as_extract_part_decodes_it(tmp_path, monkeypatch, fixture):
    raw = (FIXTURES / fixture).read_bytes()
    path = tmp_path / "m"
    path.write_bytes(raw)
    ids = leaf_ids(raw)
    assert ids
    for chunk, window in ((1 << 20, 8 << 20), (1, 16), (7, 33), (100, 200)):
        monkeypatch.setattr(parts, "CHUNK", chunk)
        monkeypatch.setattr(parts, "WINDOW", window)
        for part_id in ids:
            assert read_part(path, part_id) == mime.extract_part(raw, part_id), (part_id, chunk)
    assert read_part(path, "9.9") is None and mime.extract_part(raw, "9.9") is None


def awkward_message(rng: random.Random) -> tuple[bytes, dict[str, bytes]]:
    """A multipart message whose parts use every encoding, with lines of odd lengths."""
    a = rng.randbytes(rng.randrange(1, 5000))
    b = bytes(rng.choice(b"abc =\t\xe9\r\n") for _ in range(rng.randrange(1, 3000)))
    c = rng.randbytes(rng.randrange(1, 3000))
    b64 = base64.b64encode(a)
    width = rng.choice([1, 3, 60, 76, 77, 1000])
    b64 = b"\r\n".join(b64[i : i + width] for i in range(0, len(b64), width))
    qp = binascii.b2a_qp(b, istext=False).replace(b"\n", b"\r\n")
    raw = (b"From: x@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n"
           b"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 +
           b"\r\n--zz\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp +
           b"\r\n--zz\r\nContent-Type: multipart/alternative; boundary=\"yy\"\r\n\r\n--yy\r\n"
           b"Content-Type: application/x-bin\r\nContent-Transfer-Encoding: binary\r\n\r\n" + c +
           b"\r\n--yy--\r\n\r\n--zz--\r\n")
    return raw, {"1": a, "2": b, "3.1": c}


def test_generated_messages_stream_their_parts_exactly_with_awkward_chunk_sizes(tmp_path, monkeypatch):
    rng = random.Random(8)
    path = tmp_path / "m"
    for _ in range(12):
        raw, expected = awkward_message(rng)
        path.write_bytes(raw)
        for part_id, data in expected.items():
            assert mime.extract_part(raw, part_id)[0] == data
        for chunk in (1, 2, 3, 4, 5, 75, 76, 77, 78, 1023, 4096):
            monkeypatch.setattr(parts, "CHUNK", chunk)
            monkeypatch.setattr(parts, "WINDOW", rng.choice([1, 5, 64, 1000]))
            for part_id, data in expected.items():
                got = read_part(path, part_id, rng.choice([1, 7, 100, -1]))
                assert got is not None and got[0] == data, (part_id, chunk)


def test_a_part_file_seeks_measures_and_remembers_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(parts, "CHUNK", 100)
    raw, expected = awkward_message(random.Random(3))
    data = expected["1"]
    path = tmp_path / "m"
    path.write_bytes(raw)
    blob_id = "P" + hashlib.sha256(raw).hexdigest() + ".1"
    pf, _, _ = parts.open_part(open(path, "rb"), blob_id, "1")
    with pf:
        assert parts.known_size(blob_id) is None
        assert pf.size() == len(data) and parts.known_size(blob_id) == len(data)
        assert pf.tell() == 0
        assert pf.seek(len(data) // 2) == len(data) // 2 and pf.read(10) == data[len(data) // 2 :][:10]
        assert pf.seek(3) == 3 and pf.read() == data[3:]
        assert pf.seek(len(data) + 5) == len(data) and pf.read(1) == b""
    assert pf.closed
