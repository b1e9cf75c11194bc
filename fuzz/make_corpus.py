"""Write the seed corpora under fuzz/corpus/<target>/ (run from anywhere; the same seeds
each time, up to the timestamps libarchive writes into 7z and XAR).

Every seed is a small, harmless, constructed sample: archives and documents are built here
or by the test suite's own fixture builders around a plain-text payload, and signature
lines come from tests/data. No detected sample (not even a test file such as ClamAV's
clam.exe) is written: those stay XOR-encoded in tests/data, and ``extra_seeds`` decodes
them in memory for the fuzzing command and the smoke test instead.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import struct
import sys
import tarfile
import zlib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.engine import test_archives as ta  # noqa: E402
from tests.engine import test_executables as te  # noqa: E402
from tests.engine import test_mail as tm  # noqa: E402
from tests.engine import test_mspack as tms  # noqa: E402
from tests.engine import test_native_formats as tn  # noqa: E402
from tests.engine import test_office as to  # noqa: E402
from tests.engine import test_pdf as tp  # noqa: E402
from tests.engine import test_rtf as tr  # noqa: E402

from vigil.engine.filetype import FileType  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"
DATA = ROOT / "tests" / "data"
UNIT = DATA / "clamav-unit"
PAYLOAD = b"Vigil fuzz seed: a harmless member, nothing to detect here.\n" * 3

sys.path.insert(0, str(ROOT / "fuzz"))
import unpack as unpack_target  # noqa: E402


def selector(ftype: FileType) -> int:
    return unpack_target.TYPES.index(ftype)


def cpio_newc(files: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for i, (name, data) in enumerate([*files, (b"TRAILER!!!", b"")]):
        mode = 0o100644 if data or name != b"TRAILER!!!" else 0
        fields = [i + 1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name + b"\0"
        out += b"\0" * (-len(out) % 4) + data + b"\0" * (-len(data) % 4)
    return bytes(out)


def cpio_odc(files: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for name, data in [*files, (b"TRAILER!!!", b"")]:
        out += b"070707" + b"%06o" % 0 + b"%06o" % 1 + b"%06o" % 0o100644 + b"%06o" % 0 * 3
        out += b"%06o" % 1 + b"%06o" % 0 + b"%011o" % 0 + b"%06o" % (len(name) + 1)
        out += b"%011o" % len(data) + name + b"\0" + data
    return bytes(out)


def cpio_old(files: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for name, data in [*files, (b"TRAILER!!!", b"")]:
        n = len(name) + 1
        out += struct.pack("<13H", 0o070707, 0, 1, 0o100644, 0, 0, 1, 0, 0, 0, n,
                           len(data) >> 16, len(data) & 0xFFFF)  # fmt: skip
        out += name + b"\0" + b"\0" * (n & 1) + data + b"\0" * (len(data) & 1)
    return bytes(out)


def tar(files: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def mail() -> bytes:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.org"
    msg["Subject"] = "seed"
    msg.set_content("Hello, this is a seed message.\n")
    msg.add_attachment(PAYLOAD, maintype="application", subtype="octet-stream",
                       filename="note.bin")  # fmt: skip
    msg.add_attachment(b"<html><body>hi</body></html>", maintype="text", subtype="html",
                       filename="page.html")  # fmt: skip
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def mhtml() -> bytes:
    return (
        b'MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/html\r\nContent-Location: file:///a.htm\r\n\r\n"
        b'<html><img src="data:application/octet-stream;base64,'
        + tm.b64(PAYLOAD, b"").strip()
        + b'"></html>\r\n--B--\r\n'
    )


def ole2() -> bytes:
    return to.build_ole2({"WordDocument": b"\xec\xa5" + PAYLOAD, "Data/Payload": PAYLOAD})


def containers() -> Iterator[tuple[str, FileType, bytes]]:
    """(name, type, bytes) of every container seed."""
    two = [("a.txt", PAYLOAD), ("dir/b.bin", bytes(range(64)))]
    yield (
        "zip-deflate",
        FileType.ZIP,
        tn.make_zip([tn.deflated(b"a.txt", PAYLOAD), tn.stored(b"b.bin", bytes(range(64)))]),
    )
    yield "zip-nocentral", FileType.ZIP, tn.make_zip([tn.deflated(b"a.txt", PAYLOAD)], False)
    yield "ooxml", FileType.OOXML_WORD, tn.make_zip(
        [tn.deflated(b"[Content_Types].xml", b"<Types/>"),
         tn.deflated(b"word/document.xml", b"<w:document>" + PAYLOAD + b"</w:document>")]
    )  # fmt: skip
    yield "gzip", FileType.GZ, gzip.compress(PAYLOAD, mtime=0)
    yield "bzip2", FileType.BZ, bz2.compress(PAYLOAD)
    yield "xz", FileType.XZ, lzma.compress(PAYLOAD)
    yield "lzma-alone", FileType.XZ, lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE)
    yield "ustar", FileType.POSIX_TAR, tar(two)
    yield "gnutar", FileType.OLD_TAR, tar(two, tarfile.GNU_FORMAT)
    yield "cpio-newc", FileType.CPIO_NEWC, cpio_newc([(b"a.txt", PAYLOAD)])
    yield "cpio-odc", FileType.CPIO_ODC, cpio_odc([(b"a.txt", PAYLOAD)])
    yield "cpio-old", FileType.CPIO_OLD, cpio_old([(b"a.txt", PAYLOAD)])
    yield "7z", FileType.SEVEN_Z, ta.build("7zip", two)
    yield "xar", FileType.XAR, ta.build("xar", two)
    yield "rar5", FileType.RAR, ta.rar5([("a.txt", PAYLOAD, False)])
    yield "cab", FileType.MSCAB, tms.cab([(1, tms.mszip(PAYLOAD))], [("a.txt", len(PAYLOAD), 0, 0)])
    yield "szdd", FileType.MSSZDD, tms.szdd_literal(PAYLOAD)
    yield "arj", FileType.ARJ, tn.make_arj([(b"a.txt", 0, PAYLOAD, len(PAYLOAD), 0)])
    yield "sis", FileType.SIS, tn.make_sis([(b"a.txt", PAYLOAD)])
    yield "ole2", FileType.MSOLE2, ole2()
    yield "ole2-vba", FileType.MSOLE2, to.vba_document(b"Sub Auto_Open()\r\nEnd Sub\r\n")
    yield "onenote", FileType.ONENOTE, to.onenote_store(PAYLOAD)
    yield "pdf", FileType.PDF, tp.pdf(
        [tp.CATALOG, tp.stream(zlib.compress(PAYLOAD), b"/Filter /FlateDecode"),
         tp.stream(tp.lzw_encode(PAYLOAD), b"/Filter /LZWDecode")]
    )  # fmt: skip
    yield "rtf", FileType.RTF, tr.HEAD + tr.objdata(tr.ole1(tr.package(PAYLOAD)).hex().encode())
    yield "mail", FileType.MAIL, mail()
    yield "mhtml", FileType.MHTML, mhtml()
    yield "uuencoded", FileType.UUENCODED, tm.uu(PAYLOAD)
    yield "binhex", FileType.BINHEX, tm.hqx(PAYLOAD)
    yield "tnef", FileType.TNEF, tm.tnef([(b"a.txt", PAYLOAD)])
    yield (
        "pe",
        FileType.MSEXE,
        bytes(
            te.build_pe(
                [(0x1000, 0x200, 0x200, 0x200), (0x2000, 0x200, 0x400, 0x200)], entry=0x1000
            )
        ),
    )


def write(target: str, name: str, data: bytes) -> None:
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data)


def sig_lines(path: Path, count: int) -> bytes:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    lines = [line for line in raw.splitlines(keepends=True) if len(line) < 600]
    return b"".join(lines[:count])


def signature_seeds() -> Iterator[tuple[str, bytes]]:
    """(format, file) pairs from tests/data and short hand-written lines."""
    off = DATA / "clamav-official-sample"
    yield "hdb", sig_lines(off / "main.hdb.gz", 20)
    yield "hsb", sig_lines(off / "daily.hsb.gz", 20)
    yield "hsb", sig_lines(UNIT / "other_sigs" / "logo.hsb", 5)
    yield "fp", sig_lines(off / "daily.fp.gz", 10)
    yield "ndb", sig_lines(off / "daily.ndb.gz", 30)
    yield "ndb", sig_lines(UNIT / "other_sigs" / "Clamav-Unit-Test-Signature.ndb", 5)
    yield "ldb", sig_lines(off / "main.ldb.gz", 30)
    yield (
        "mdb",
        b"512:3b5a3c4e8d5c3b1a2f4e6d7c8b9a0f1e:Test.Section.One\n*:3b5a3c4e8d5c3b1a2f4e6d7c8b9a0f1e:Test.Section.Two:73\n",
    )
    yield "imp", b"e6e42ba6ca35a2ff5cfd8a2f09be4c5f:40:Test.Import.One\n"
    yield "db", b"Test.Legacy=6869206d6f6d{-10}20636c616d\nTest.Legacy2=41424344??4546*4748\n"
    yield (
        "cdb",
        b"Test.Cdb:CL_TYPE_ZIP:*:evil\\.exe:*:*:*:*:*:*\nTest.Cdb2:*:100-200:.*:10:20:1:0:*:*:51:255\n",
    )
    yield "ftm", (ROOT / "src" / "vigil" / "data" / "builtin.ftm").read_bytes()[:4000]
    yield "ign", b"Test.Ignored.One\nTest.Ignored.Two\n"
    yield "ign2", b"Eicar-Test-Signature\n"
    yield (
        "yar",
        (
            b'rule seed_rule : tag1\n{\n  meta:\n    author = "vigil"\n  strings:\n'
            b'    $a = "harmless" nocase\n    $b = { 48 65 6c ?? 6f [2-4] 21 }\n'
            b"    $c = /seed[0-9]+/\n  condition:\n    $a or ($b and #c > 1)\n}\n"
        ),
    )
    yield (
        "ldb",
        (
            b"Test.Ldb.One;Engine:51-255,Target:1;(0&1)|2;41424344;EP+0:9090{2-4}9090;"
            b"2/seed[0-9]+/i\nTest.Ldb.Two;Engine:81-255,Target:0;0&1;0:4d5a::i;1(>>4#hb2#=0)\n"
        ),
    )


SIG_FORMATS = (
    "hdb",
    "hsb",
    "mdb",
    "imp",
    "fp",
    "ndb",
    "db",
    "ldb",
    "cdb",
    "ftm",
    "ign",
    "ign2",
    "yar",
)
DB_SUFFIXES = (
    "hdb", "hsb", "hdu", "mdb", "msb", "imp", "fp", "sfp", "ndb", "ndu", "sdb", "db", "ldb",
    "ldu", "cdb", "ftm", "ign", "ign2", "yar", "yara", "cvd", "cld", "cud", "info", "pdb",
)  # fmt: skip


def main() -> None:
    import shutil

    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    # --- protocol and the server connection
    commands = [
        b"zPING\0", b"nPING\n", b"PING\n", b"nVERSION\n", b"zVERSIONCOMMANDS\0", b"nSTATS\n",
        b"zIDSESSION\0zPING\0zVERSION\0zEND\0", b"nIDSESSION\nnPING\nnSTATS\nnEND\n",
        b"zINSTREAM\0" + struct.pack(">I", len(PAYLOAD)) + PAYLOAD + b"\0\0\0\0",
        b"nINSTREAM\n" + struct.pack(">I", 4) + b"abcd" + struct.pack(">I", 0),
        b"zIDSESSION\0zINSTREAM\0\0\0\0\x05hello\0\0\0\0zPING\0zEND\0",
        b"nSCAN /nonexistent/file\n", b"zCONTSCAN /tmp\0", b"nMULTISCAN /tmp\n",
        b"zALLMATCHSCAN /tmp\0", b"nFILDES\n", b"nRELOAD\n", b"SELFCHECK\n", b"nDETSTATS\n",
        b"zSHUTDOWN\0", b"nBOGUS\n", b"IDSESSION\n",
    ]  # fmt: skip
    for i, c in enumerate(commands):
        write("protocol", f"cmd-{i:02d}", c)
        write("connection", f"cmd-{i:02d}", c)
    # --- configuration files
    for conf in sorted((ROOT / "tests" / "config" / "golden").glob("*.conf")):
        write("clamd_conf", conf.name, conf.read_bytes()[:8000])
    write("clamd_conf", "limits.conf", b"MaxFileSize 10M\nMaxScanSize 1G\nMaxRecursion 5\n"
          b"StreamMaxLength 25M\nLocalSocket /tmp/x.sock\nLocalSocketMode 660\nTCPSocket 3310\n"
          b"TCPAddr 127.0.0.1\nExcludePath ^/proc/\nExcludePath ^/sys/\nUser nobody\n")  # fmt: skip
    write("freshclam_conf", "basic.conf", b"DatabaseDirectory /var/lib/clamav\n"
          b"DatabaseMirror database.clamav.net\nChecks 24\nNotifyClamd /etc/clamav/clamd.conf\n"
          b"PrivateMirror mirror.example.org\nConnectTimeout 30\nReceiveTimeout 0\n"
          b"ScriptedUpdates yes\nCompressLocalDatabase no\nSafeBrowsing false\n"
          b"DNSDatabaseInfo current.cvd.clamav.net\nMaxAttempts 5\n")  # fmt: skip
    write("freshclam_conf", "bad.conf", b"Example\nChecks many\n")
    # --- signature databases
    for i, (fmt, text) in enumerate(signature_seeds()):
        write("sigdb", f"{fmt}-{i:02d}", bytes([SIG_FORMATS.index(fmt), 0]) + text)
        write("database", f"{fmt}-{i:02d}", bytes([DB_SUFFIXES.index(fmt), 0]) + text)
        if fmt in ("ndb", "ldb"):
            for j, line in enumerate(text.splitlines()[:12]):
                fields = line.split(b":" if fmt == "ndb" else b";")
                if fmt == "ndb" and len(fields) >= 4:
                    write("pattern", f"hex-{i}-{j}", b"\0\0" + fields[3])
                    write("pattern", f"off-{i}-{j}", b"\1\0" + fields[2])
                elif fmt == "ldb" and len(fields) >= 4:
                    write("pattern", f"expr-{i}-{j}", b"\2\0" + fields[2])
                    write("pattern", f"tdb-{i}-{j}", b"\3\0" + fields[1])
                    write("pattern", f"sub-{i}-{j}", b"\4\1" + b";".join(fields[3:]))
    hand = [b"4142{-5}43??44*45(46|47)[1-2]48", b"!(41|42)4344", b"(B)414243(L)",
            b"41424344{10-}4546", b"a?b?c?d?", b"4142434445[0-4]46"]  # fmt: skip
    for j, text in enumerate(hand):
        write("pattern", f"hexhand-{j}", b"\0\x04" + text)
    for fmt, name in (("cvd", "test-1.cvd"), ("cld", "test-2.cvd")):
        raw = (UNIT / "freshclam_testfiles" / name).read_bytes()
        write("database", f"{fmt}-{name}", bytes([DB_SUFFIXES.index(fmt), 0]) + raw)
    # --- CVD, cdiff, .sign
    fresh = UNIT / "freshclam_testfiles"
    for f in sorted(fresh.glob("test-[12].cvd")):
        write("cvd", f.name + "-verify", b"\x04" + f.read_bytes())
        write("cvd", f.name + "-cld", b"\x01" + f.read_bytes())
    # the body as plain tar (ClamAV reads a body starting with "COPYING" uncompressed), so
    # mutations reach the tar and .info checks instead of breaking the gzip stream
    raw = (fresh / "test-1.cvd").read_bytes()
    plain = raw[:512] + gzip.decompress(raw[512:])
    write("cvd", "test-1-plain-tar.cld", b"\x01" + plain)
    write("cvd", "test-1-plain-tar.cud", b"\x02" + plain)
    for f in sorted(fresh.glob("test-*.cdiff")):
        write("cdiff", f.name, b"\0" + f.read_bytes())
    script = (b"OPEN daily.ndb\nADD Sig.Four:0:*:7a7a7a7a\nDEL 2 Sig.Two:0:*:6162636465\n"
              b"XCHG 1 Sig.One:0:*:414243444546 Sig.Uno:0:*:414243444546\nCLOSE\n"
              b"MOVE daily.ndb daily.ldb 1 Sig.Uno:0:*:414243444546 1 Sig.Uno:0:*:414243444546\n"
              b"UNLINK daily.ign2\n")  # fmt: skip
    write("cdiff", "script-plain", b"\x01" + script)
    write("cdiff", "script-roundtrip", b"\x03" + script)
    write("cdiff", "script-gzip", b"\x01" + gzip.compress(script, mtime=0))
    for f in sorted(fresh.glob("test-[12].*.sign")):
        write("sign", f.name, f.read_bytes())
    # --- containers: unpack (direct), scan (typed and forced), filetype (heads)
    for name, ftype, data in containers():
        sel = selector(ftype)
        write("unpack", name, bytes([sel, 1]) + data)
        write("scan", name + "-forced", bytes([sel + 1]) + data)
        write("scan", name + "-typed", b"\0" + data)
        write("filetype", name, data[:1024])
    write(
        "unpack",
        "ar",
        bytes([len(unpack_target.TYPES), 1])
        + b"!<arch>\n"
        + b"a.txt/          0           0     0     644     %-10d`\n" % len(PAYLOAD)
        + PAYLOAD,
    )
    import zstandard

    write(
        "unpack",
        "zstd",
        bytes([len(unpack_target.TYPES) + 1, 1]) + zstandard.ZstdCompressor().compress(PAYLOAD),
    )
    html = b"<html><script>document.write('x')</script><body>hi</body></html>"
    for name, text in (("html", html),
                       ("elf", bytes(te.build_elf())), ("macho", te.build_macho(7)),
                       ("utf16", "hello text".encode("utf-16")), ("ascii", PAYLOAD)):  # fmt: skip
        write("scan", f"{name}-typed", b"\0" + text)
        write("filetype", name, text[:1024])
    # --- native entry points: selector, 32 parameter bytes, then the buffer
    for which in range(25):
        params = hashlib.sha256(b"params%d" % which).digest()
        body = zlib.compress(PAYLOAD) if which in (5, 14) else PAYLOAD
        write("native", f"entry-{which:02d}", bytes([which]) + params + body)
        write("native", f"entry-{which:02d}-small", bytes([which]) + bytes(32) + body[:64])
    write(
        "native", "ovba", bytes([15]) + bytes(32) + to.ovba_literal(b'Attribute VB_Name = "M"\r\n')
    )
    write("native", "lzw", bytes([6]) + bytes(32) + tp.lzw_encode(PAYLOAD))
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"wrote {sum(1 for p in CORPUS.rglob('*') if p.is_file())} seeds, {total} bytes")


if __name__ == "__main__":
    main()
