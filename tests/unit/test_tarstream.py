"""A jobs/ tar stream in and out of a job container: pack what the store holds, read back what the
container's archive holds as hostile input (no link, device or FIFO kept, no path outside jobs/, every
cap applied before a member's data is read, memory bounded). The hostile streams are written by the
stdlib's tarfile (an independent writer) or by hand where tarfile cannot write them."""

from __future__ import annotations

import io
import random
import tarfile
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from runner import tarstream
from runner.settings import Settings
from runner.tarstream import Caps, MiB, unpack

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "",
           fmt: int = tarfile.PAX_FORMAT, size: int | None = None, **pax: str) -> bytes:
    """One member as tarfile writes it: its header(s), then its data padded to a block."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, link, int(WHEN.timestamp())
    info.size = len(data) if size is None else size
    info.pax_headers = pax
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info.tobuf(fmt, "utf-8", "surrogateescape") + data + bytes(-len(data) % 512)


END = bytes(1024)
ROOT = member("jobs", tarfile.DIRTYPE)


def stream(*members: bytes) -> bytes:
    return ROOT + b"".join(members) + END


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


class Counted:
    """Chunks given lazily, counting how many bytes the reader pulled."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks, self.pulled = chunks, 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.pulled += len(chunk)
            yield chunk


# -- pack -------------------------------------------------------------------------------------------

FILES = {"a.txt": (b"hello", WHEN), "x_attachments/n.bin": (bytes(range(256)) * 5, WHEN - timedelta(days=400)),
         "/".join(["d" * 120] * 6) + "/deep.json": (b"{}", WHEN)}


def test_pack_is_a_tar_of_jobs_owned_by_the_job_with_private_modes_and_kept_mtimes() -> None:
    with tarfile.open(fileobj=io.BytesIO(tarstream.pack(FILES, 100_123, 100_124))) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert set(members) >= {"jobs", "jobs/a.txt", "jobs/x_attachments", "jobs/x_attachments/n.bin"}
        for name, (data, mtime) in FILES.items():
            m = members[f"jobs/{name}"]
            assert m.isreg() and m.mode == 0o600 and tf.extractfile(m).read() == data  # type: ignore[union-attr]
            assert m.mtime == int(mtime.timestamp())
        dirs = [m for m in members.values() if m.isdir()]
        assert len(dirs) == 1 + 1 + 6 and all(m.mode == 0o700 for m in dirs)
        assert all((m.uid, m.gid) == (100_123, 100_124) for m in members.values())


def test_pack_then_unpack_gives_the_files_back_whatever_the_chunking() -> None:
    data = tarstream.pack(FILES, 1000, 1000)
    assert b"".join(tarstream.pack_chunks(FILES, 1000, 1000)) == data
    for size in (1, 7, 512, 100_000):
        out = unpack(chunked(data, size))
        assert out.complete and out.refused == [] and out.files == FILES


def test_pack_keeps_mtimes_to_the_second() -> None:
    out = unpack([tarstream.pack({"a": (b"", WHEN + timedelta(microseconds=900_000))}, 1, 1)])
    assert out.files["a"][1] == WHEN


def test_pack_of_nothing_is_an_empty_jobs_directory() -> None:
    with tarfile.open(fileobj=io.BytesIO(tarstream.pack({}, 5, 5))) as tf:
        assert [m.name for m in tf.getmembers()] == ["jobs"]
    assert unpack([tarstream.pack({}, 5, 5)]).files == {}


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../b", ".hidden", "a//b", "sp ace", "é.txt", "a/"])
def test_pack_refuses_a_name_the_store_would_not_hold(name: str) -> None:
    with pytest.raises(ValueError, match="cannot pack"):
        tarstream.pack({name: (b"x", WHEN)}, 1, 1)


def test_pack_refuses_a_name_that_is_a_file_and_a_directory() -> None:
    with pytest.raises(ValueError, match="both a file and a directory"):
        tarstream.pack({"a": (b"x", WHEN), "a/b": (b"y", WHEN)}, 1, 1)


# -- what is refused, one entry at a time ---------------------------------------------------------------

GOOD = member("jobs/good.txt", data=b"kept")
HOSTILE = [
    (member("jobs/shadow", tarfile.SYMTYPE, link="/etc/shadow"), "jobs/shadow: a symbolic link (to /etc/shadow)"),
    (member("jobs/hard", tarfile.LNKTYPE, link="etc/shadow"), "jobs/hard: a hard link (to etc/shadow)"),
    (member("jobs/fifo", tarfile.FIFOTYPE), "jobs/fifo: a FIFO"),
    (member("jobs/null", tarfile.CHRTYPE), "jobs/null: a character device"),
    (member("jobs/sda", tarfile.BLKTYPE), "jobs/sda: a block device"),
    (member("../x", data=b"escape"), "../x: a path with a '..' component"),
    (member("jobs/../../x", data=b"escape"), "jobs/../../x: a path with a '..' component"),
    (member("/abs", data=b"escape"), "/abs: an absolute path"),
    (member("/jobs/abs", data=b"escape"), "/jobs/abs: an absolute path"),
    (member("other/x", data=b"outside"), "other/x: not inside jobs/"),
    (member("jobsx", data=b"outside"), "jobsx: not inside jobs/"),
    (member("jobs", data=b"a file named jobs"), "jobs: not inside jobs/"),
    (member("jobs/.env", data=b"x"), "jobs/.env: a name not allowed"),
    (member("jobs/__pycache__/", tarfile.DIRTYPE), "jobs/__pycache__/: a name not allowed"),
    (member("jobs/" + "n" * 129, data=b"x"), "jobs/nnnn"),
    (member("jobs/x", tarfile.CONTTYPE, data=b"x" * 600), "jobs/x: an entry of unknown type 7"),
    (member("jobs/v", b"V", data=b"label"), "jobs/v: an entry of unknown type V"),
    (member("jobs/s", data=b"\0" * 700, **{"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}), "jobs/s: a sparse file"),
]


@pytest.mark.parametrize(("entry", "reason"), HOSTILE, ids=[r.split(":")[0] for _, r in HOSTILE])
def test_a_hostile_entry_is_refused_with_its_reason_and_the_good_files_kept(entry: bytes, reason: str) -> None:
    out = unpack(chunked(stream(GOOD, entry, member("jobs/after.txt", data=b"also kept")), 100))
    assert out.complete, out
    assert out.files == {"good.txt": (b"kept", WHEN), "after.txt": (b"also kept", WHEN)}
    assert len(out.refused) == 1 and out.refused[0].startswith(reason), out.refused
    assert out.refused_count == 1


def test_names_that_are_not_utf8_or_hold_terminal_escapes_are_refused_and_shown_escaped() -> None:
    names = ["jobs/\udcff\udcfe.txt", "jobs/\x1b]0;owned\x07", "jobs/\u202etxt.exe", "jobs/a\nb", "jobs/\x1b[2J"]
    out = unpack([stream(GOOD, *(member(n, data=b"x") for n in names))])
    assert out.complete and list(out.files) == ["good.txt"]
    assert out.refused_count == len(names)
    for reason in out.refused:
        assert reason.isprintable() and "\x1b" not in reason and "\n" not in reason, reason
    assert out.refused[0].startswith("jobs/\\xff\\xfe.txt: ")
    assert out.refused[1].startswith("jobs/\\x1b]0;owned\\x07: ")
    assert out.refused[2].startswith("jobs/\\u202etxt.exe: ")


def test_a_link_target_with_escapes_is_shown_escaped() -> None:
    out = unpack([stream(member("jobs/l", tarfile.SYMTYPE, link="/tmp/\x1b[31mred\udcff"))])
    assert out.refused == ["jobs/l: a symbolic link (to /tmp/\\x1b[31mred\\xff); links are not kept"]


def test_gnu_long_names_are_read_and_judged_like_any_name() -> None:
    long_ok = "jobs/" + "/".join(["p" * 100] * 3) + "/f.txt"
    out = unpack([stream(member(long_ok, data=b"long", fmt=tarfile.GNU_FORMAT),
                         member("jobs/" + "\udcff" * 150, data=b"x", fmt=tarfile.GNU_FORMAT),
                         member("jobs/lnk", tarfile.SYMTYPE, link="/" + "e" * 300, fmt=tarfile.GNU_FORMAT))])
    assert out.complete and out.files == {long_ok[5:]: (b"long", WHEN)}
    assert out.refused[0].startswith("jobs/\\xff\\xff") and out.refused[0].endswith("...: a name not allowed "
                                                                                 "(each part 1 to 128 letters, "
                                                                                 "digits, '.', '_' or '-', not "
                                                                                 "starting with '.', '_' or '-')")
    assert out.refused[1].startswith("jobs/lnk: a symbolic link (to /eee")


def test_a_pax_path_overrides_the_header_name_and_is_judged() -> None:
    entry = member("jobs/innocent.txt", data=b"x", path="/etc/cron.d/evil")
    out = unpack([stream(GOOD, entry)])
    assert out.complete and list(out.files) == ["good.txt"]
    assert out.refused == ["/etc/cron.d/evil: an absolute path"]


def test_a_global_pax_header_is_not_applied() -> None:
    info = tarfile.TarInfo("pax_global_header")
    info.type = tarfile.XGLTYPE
    record = b"20 path=/etc/shadow\n"
    info.size = len(record)
    glob = info.tobuf(tarfile.USTAR_FORMAT) + record + bytes(512 - len(record))
    out = unpack([stream(glob, GOOD)])
    assert out.complete and out.files == {"good.txt": (b"kept", WHEN)}


def _gnu_sparse(name: bytes, data: bytes, extension_blocks: int) -> bytes:
    """An old GNU sparse ('S') member, which tarfile reads but cannot write: a header whose sparse map
    continues in ``extension_blocks`` blocks before the data."""
    block = bytearray(512)
    block[0:len(name)] = name
    block[100:108], block[108:116], block[116:124] = b"0000600\0", b"0001750\0", b"0001750\0"
    block[124:136], block[136:148] = b"%011o\0" % len(data), b"%011o\0" % int(WHEN.timestamp())
    block[156:157], block[257:265] = b"S", b"ustar  \0"
    block[386:410] = b"%011o\0%011o\0" % (0, len(data))
    block[482] = 1 if extension_blocks else 0
    block[483:495] = b"%011o\0" % (1024 * MiB)  # the "real" size: 1 GiB, of which len(data) is stored
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    extensions = b""
    for i in range(extension_blocks):
        ext = bytearray(512)
        ext[504] = 1 if i < extension_blocks - 1 else 0
        extensions += bytes(ext)
    return bytes(block) + extensions + data + bytes(-len(data) % 512)


def test_an_old_gnu_sparse_entry_is_refused_and_skipped_exactly() -> None:
    sparse = _gnu_sparse(b"jobs/sparse.bin", b"\1" * 1000, extension_blocks=3)
    with tarfile.open(fileobj=io.BytesIO(stream(sparse, GOOD))) as tf:  # a real sparse entry, as tarfile sees it
        assert tf.getmember("jobs/sparse.bin").issparse()
    out = unpack(chunked(stream(sparse, GOOD), 333))
    assert out.complete and out.files == {"good.txt": (b"kept", WHEN)}
    assert out.refused == ["jobs/sparse.bin: a sparse file; only plain files are kept"]


def test_a_gnu_sparse_map_past_the_header_cap_is_a_limit() -> None:
    out = unpack([stream(_gnu_sparse(b"jobs/s", b"", extension_blocks=200))])
    assert out.limit == "a tar header record is larger than 64 KiB" and not out.complete


def test_duplicate_names_and_file_directory_clashes_keep_the_first() -> None:
    out = unpack([stream(member("jobs/a", data=b"first"), member("jobs/a", data=b"second"),
                         member("jobs/a/b", data=b"under a file"), member("jobs/d/f", data=b"in d"),
                         member("jobs/d", data=b"file over a directory"), member("jobs/d/", tarfile.DIRTYPE),
                         member("jobs/a/", tarfile.DIRTYPE))])
    assert out.complete and out.files == {"a": (b"first", WHEN), "d/f": (b"in d", WHEN)}
    assert out.refused == ["jobs/a: a second entry of the same name", "jobs/a/b: inside a name that is a file",
                           "jobs/d: a file of the same name as a directory", "jobs/a/: a second entry of the same name"]


def test_the_list_of_refusals_is_bounded_but_all_are_counted() -> None:
    links = (member(f"jobs/l{i}", tarfile.SYMTYPE, link="/etc/shadow") for i in range(5000))
    out = unpack([stream(*links, GOOD)])
    assert out.complete and list(out.files) == ["good.txt"]
    assert len(out.refused) == tarstream.REFUSALS_KEPT and out.refused_count == 5000


def test_mtimes_are_timezone_aware_and_clamped() -> None:
    out = unpack([stream(member("jobs/far", data=b"1", mtime="99999999999999999999.5"),
                         member("jobs/past", data=b"2", mtime="-1.5"),
                         member("jobs/frac", data=b"3", mtime="1700000000.999"))])
    assert out.complete
    far, past, frac = (out.files[n][1] for n in ("far", "past", "frac"))
    assert far.year == 9999 and far.tzinfo is UTC
    assert past == datetime(1969, 12, 31, 23, 59, 58, tzinfo=UTC)
    assert frac == datetime.fromtimestamp(1700000000, UTC)


# -- caps: stop reading at once -----------------------------------------------------------------------

def _empty_files(n: int) -> Iterator[bytes]:
    yield ROOT
    for i in range(n):
        yield member(f"jobs/e{i}")
    yield END


def test_100000_empty_files_are_stopped_at_the_count_cap_quickly() -> None:
    src = Counted(_empty_files(100_000))
    start = time.monotonic()
    out = unpack(src)
    assert time.monotonic() - start < 5
    assert out.limit == "jobs/ holds more than 10,000 entries" and not out.complete
    assert src.pulled <= 512 * 10_002, "read past the entry that crossed the cap"
    assert len(out.files) == 10_000


def test_the_count_cap_counts_every_kind_of_entry() -> None:
    entries = [member(f"jobs/d{i}/", tarfile.DIRTYPE) for i in range(3)] + [member("jobs/l", tarfile.SYMTYPE)]
    assert unpack([stream(*entries)], Caps(entries=3)).limit == "jobs/ holds more than 3 entries"
    assert unpack([stream(*entries)], Caps(entries=4)).complete


def _one_gib_of_zeros(header: bytes) -> Iterator[bytes]:
    yield ROOT + header
    zeros = bytes(MiB)
    for _ in range(1024):
        yield zeros
    yield END


def test_a_1gib_sparse_file_as_the_engine_sends_it_is_stopped_without_reading_it() -> None:
    """A sparse file arrives in the engine's archive as its apparent size of zeros."""
    src = Counted(_one_gib_of_zeros(member("jobs/sparse.bin", size=1024 * MiB)))
    tracemalloc.start()
    try:
        out = unpack(src)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.limit == "jobs/ holds a file larger than 50 MiB (jobs/sparse.bin)"
    assert src.pulled <= 3 * MiB and peak < 4 * MiB, (src.pulled, peak)


def test_a_1gib_file_under_a_larger_file_cap_is_stopped_by_the_total_cap() -> None:
    src = Counted(_one_gib_of_zeros(member("jobs/sparse.bin", size=1024 * MiB)))
    out = unpack(src, Caps(file_bytes=2048 * MiB))
    assert out.limit == "jobs/ holds more than 50 MiB" and src.pulled <= 3 * MiB


def test_the_total_cap_counts_refused_entries_and_stops_before_the_data_that_crosses_it() -> None:
    def files() -> Iterator[bytes]:
        yield ROOT
        for name, size in [("../evil", 4 * MiB)] + [(f"jobs/f{i}", 3 * MiB) for i in range(100)]:
            yield member(name, size=size)  # the header alone: its data is the next chunk
            yield bytes(size)
    src = Counted(files())
    out = unpack(src, Caps(total_bytes=10 * MiB))
    assert out.limit == "jobs/ holds more than 10 MiB"
    assert list(out.files) == ["f0", "f1"] and out.refused_count == 1
    assert src.pulled <= 10 * MiB + 8 * 512, "read the data of the file that crossed the cap"


def test_a_header_claiming_a_huge_size_with_a_short_body_is_a_limit_not_a_read() -> None:
    for size in (2 ** 40, 2 ** 80):  # base-256 sizes, as GNU tar and Go write them past 8 GiB
        block = bytearray(member("jobs/huge", data=b"", fmt=tarfile.GNU_FORMAT))
        block[124:136] = b"\x80" + size.to_bytes(11, "big")
        block[148:156] = b" " * 8
        block[148:156] = b"%06o\0 " % sum(block)
        out = unpack([stream(bytes(block), b"short body")])
        assert out.limit == "jobs/ holds a file larger than 50 MiB (jobs/huge)"
    out = unpack([stream(member("jobs/huge", data=b"x", size=2 ** 33))])  # tarfile's own PAX size record
    assert out.limit == "jobs/ holds a file larger than 50 MiB (jobs/huge)"


def test_a_header_claiming_more_than_its_body_within_the_caps_is_an_error() -> None:
    out = unpack([ROOT + member("jobs/short", size=1000)[:512] + b"ten bytes."])
    assert out.error is not None and out.error.startswith("the tar stream ends early") and not out.files


def test_a_huge_pax_header_is_stopped_before_it_is_read() -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 1024 * MiB
    src = Counted(_one_gib_of_zeros(info.tobuf(tarfile.USTAR_FORMAT)))
    tracemalloc.start()
    try:
        out = unpack(src)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.limit == "a tar header record is larger than 64 KiB"
    assert src.pulled <= 3 * MiB and peak < 4 * MiB


def test_a_huge_gnu_long_name_is_stopped_before_it_is_read() -> None:
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, 10 * MiB
    out = unpack([ROOT + info.tobuf(tarfile.USTAR_FORMAT) + bytes(10 * MiB) + END])
    assert out.limit == "a tar header record is larger than 64 KiB"


def test_a_pax_header_of_digits_under_the_cap_is_refused_in_linear_time() -> None:
    """CPython 3.11's tarfile takes minutes on this (a backtracking regex over the record)."""
    info = tarfile.TarInfo("././@PaxHeader")
    body = b"9" * (60 * 1024)
    info.type, info.size = tarfile.XHDTYPE, len(body)
    start = time.monotonic()
    out = unpack([stream(info.tobuf(tarfile.USTAR_FORMAT) + body + bytes(-len(body) % 512), GOOD)])
    assert time.monotonic() - start < 1
    assert out.error == "a PAX header record is malformed"


def test_many_small_pax_records_under_the_cap_are_parsed_in_linear_time() -> None:
    records = {f"k{i}": "" for i in range(5000)}  # about 55 KiB of records, each ignored
    start = time.monotonic()
    out = unpack([stream(member("jobs/ok", data=b"x", **records))])
    assert time.monotonic() - start < 1 and out.complete and list(out.files) == ["ok"]


def test_a_path_too_deep_or_too_long_is_a_limit() -> None:
    deep = "jobs/" + "/".join(["d"] * 65)
    assert unpack([stream(member(deep, data=b"x"))]).limit == f"jobs/ holds a path deeper than 64 levels ({deep[:117]}...)"
    assert unpack([stream(member("jobs/" + "/".join(["d"] * 64), data=b"x"))]).complete
    long = "jobs/" + "/".join(["n" * 120] * 30)
    assert unpack([stream(member(long, data=b"x"))], Caps(path_bytes=1000)).limit == \
        f"jobs/ holds a path longer than 1,000 bytes ({long[:117]}...)"


def test_caps_follow_the_settings() -> None:
    caps = Caps.of(Settings(disk_mb=7, max_file_mb=3, max_files=12))
    assert (caps.total_bytes, caps.file_bytes, caps.entries) == (7 * MiB, 3 * MiB, 12)


# -- broken streams ----------------------------------------------------------------------------------

def test_every_truncation_of_a_good_stream_is_an_error_never_a_shorter_listing() -> None:
    data = tarstream.pack(FILES, 1, 1)
    for cut in range(0, len(data) - 1024, 97):
        out = unpack(chunked(data[:cut], 50))
        assert out.error is not None and out.limit is None, cut
    cut_at_end_marker = unpack([data[:-1024]])
    assert cut_at_end_marker.error is not None and "without its end-of-archive marker" in cut_at_end_marker.error
    assert unpack([data[:-512]]).complete, "one zero block ends an archive, as tarfile reads it"


def test_an_empty_stream_is_an_error_and_an_empty_archive_is_not() -> None:
    assert unpack([]).error is not None
    assert unpack([b"", b""]).error is not None
    assert unpack([END]).complete and unpack([END]).files == {}


@pytest.mark.parametrize("seed", range(20))
def test_garbage_is_an_error(seed: int) -> None:
    rng = random.Random(seed)
    garbage = rng.randbytes(rng.randrange(1, 20_000))
    out = unpack(chunked(garbage, rng.randrange(1, 4096)))
    assert out.error is not None and not out.files


def test_a_header_with_a_number_that_is_not_octal_is_an_error() -> None:
    block = bytearray(member("jobs/x", data=b""))
    block[124:136] = b"12345678x01\0"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    assert unpack([stream(bytes(block))]).error == "a tar header's size is not a number"


def test_a_flipped_byte_in_a_header_is_a_checksum_error() -> None:
    data = bytearray(stream(GOOD))
    data[512 + 3] ^= 0x01
    out = unpack([bytes(data)])
    assert out.error == "not a tar stream: bad header checksum at byte 512"


def test_more_extended_headers_in_a_row_than_allowed_is_an_error() -> None:
    pax = tarfile.TarInfo("././@PaxHeader")
    record = b"16 path=jobs/ok\n"
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    one = pax.tobuf(tarfile.USTAR_FORMAT) + record + bytes(512 - len(record))
    assert unpack([stream(one * 8 + member("jobs/ignored"))]).files == {"ok": (b"", WHEN)}
    assert unpack([stream(one * 9 + member("jobs/ignored"))]).error == "more than 8 extended headers in a row"


def test_malformed_pax_numbers_are_errors() -> None:
    assert unpack([stream(member("jobs/x", data=b"x", size=1, mtime="soon"))]).error == "a PAX header's mtime is not a number"
    record = b"12 size=-10\n"
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    out = unpack([stream(pax.tobuf(tarfile.USTAR_FORMAT) + record + bytes(512 - len(record)) + member("jobs/x"))])
    assert out.error == "a PAX header's size is not a number"
    record = b"99 size=10\n"  # a record longer than the header holds
    pax.size = len(record)
    out = unpack([stream(pax.tobuf(tarfile.USTAR_FORMAT) + record + bytes(512 - len(record)) + member("jobs/x"))])
    assert out.error == "a PAX header record is malformed"


def test_unpack_never_raises_on_a_mangled_stream() -> None:
    data = stream(GOOD, *(entry for entry, _ in HOSTILE))
    rng = random.Random(17)
    for _ in range(300):
        mangled = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        out = unpack(chunked(bytes(mangled), rng.randrange(1, 2000)))
        assert out.complete or out.error or out.limit
        assert all(name.isascii() and ".." not in name.split("/") for name in out.files)

