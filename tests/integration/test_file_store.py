"""A thread's files in either store (RUNNER_FILES=local|postgres) over a real Postgres: the same
behaviour through the service's files and scripts, the caps (too big, too many, too much in all),
writers at once on several "runners" (a Database each) never passing them, and, in the database, a
run's changes applied inside the caller's transaction (replace_changed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from runner.errors import NotFound, ValidationError
from runner.filerules import FileCaps
from runner.service import Jobs
from runner.service.files import FILE_CAP, Files
from runner.service.storedfiles import StoredFiles
from runner.settings import Settings
from runner.store import Database, Store
from runner.threads import ThreadId

from ..unit.test_filerules import BAD, GOOD

THREAD = ThreadId.parse("telegram:7")
KiB = 1024


@pytest.fixture(params=["local", "postgres"])
def files_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return settings.with_(files=request.param, disk_mb=1, max_files=10)


@pytest.fixture
def service(files_settings: Settings, db: Database) -> Jobs:
    return Jobs(files_settings, db)


def _names(service: Jobs) -> list[str]:
    return [f.name for f in service.files.list(THREAD).files]


def test_the_backend_is_the_one_the_setting_names(service: Jobs, files_settings: Settings) -> None:
    expected = StoredFiles if files_settings.files == "postgres" else Files
    assert type(service.files) is expected and service.scripts.in_database == (files_settings.files == "postgres")


def test_files_are_written_read_listed_replaced_and_deleted(service: Jobs, files_settings: Settings) -> None:
    files = service.files
    assert files.list(THREAD).files == [] and files.list(THREAD).other == 0
    files.write(THREAD, "input.json", b'{"limit": 100}')
    files.write(THREAD, "blob.bin", bytes(range(256)))
    assert files.read(THREAD, "input.json") == b'{"limit": 100}' and files.read(THREAD, "blob.bin") == bytes(range(256))
    listed = files.list(THREAD).files
    assert [(f.name, f.size) for f in listed] == [("blob.bin", 256), ("input.json", 14)]
    assert all(f.modified.tzinfo is not None and abs((datetime.now(UTC) - f.modified).total_seconds()) < 60
               for f in listed)
    files.write(THREAD, "input.json", b"[]")  # replaced whole
    assert files.read(THREAD, "input.json") == b"[]"
    files.delete(THREAD, "input.json")
    with pytest.raises(NotFound, match="there is no file jobs/input.json"):
        files.read(THREAD, "input.json")
    with pytest.raises(NotFound, match="there is no file jobs/input.json"):
        files.delete(THREAD, "input.json")
    assert _names(service) == ["blob.bin"]
    assert files.list(ThreadId.parse("telegram:8")).files == []  # another thread's are not this one's
    on_disk = (THREAD.jobs_dir(files_settings.data_dir) / "blob.bin").exists()
    assert on_disk == (files_settings.files == "local"), "the database's files never touch the data directory"


@pytest.mark.parametrize("bad", [".hidden", "../x", "a/b", "x" * 129, "", "caf\u00e9.txt", "a b"])
def test_a_name_not_of_the_plain_shape_is_refused_alike(service: Jobs, bad: str) -> None:
    for call in (lambda: service.files.write(THREAD, bad, b"x"), lambda: service.files.read(THREAD, bad),
                 lambda: service.files.delete(THREAD, bad)):
        with pytest.raises(ValidationError, match=r"is not allowed: use 1 to 128 letters"):
            call()
    assert _names(service) == []


def test_a_file_too_large_for_the_api_is_refused(service: Jobs) -> None:
    with pytest.raises(ValidationError, match=f"at most {FILE_CAP} bytes are written"):
        service.files.write(THREAD, "big.bin", b"x" * (FILE_CAP + 1))
    service.files.write(THREAD, "ok.bin", b"x" * FILE_CAP)
    assert _names(service) == ["ok.bin"]


def test_the_threads_count_and_total_are_limits(service: Jobs) -> None:
    for i in range(10):
        service.files.write(THREAD, f"f{i}.txt", b"x")
    with pytest.raises(ValidationError, match="delete files first"):
        service.files.write(THREAD, "eleventh.txt", b"x")
    assert len(_names(service)) == 10 and "eleventh.txt" not in _names(service)
    for i in range(10):
        service.files.delete(THREAD, f"f{i}.txt")
    service.files.write(THREAD, "a.bin", b"a" * 400 * KiB)
    service.files.write(THREAD, "b.bin", b"b" * 400 * KiB)
    with pytest.raises(ValidationError, match="MiB limit: delete files first"):
        service.files.write(THREAD, "c.bin", b"c" * 400 * KiB)  # 1200 KiB in all, past RUNNER_DISK_MB=1
    assert _names(service) == ["a.bin", "b.bin"]


@pytest.fixture
def runners(files_settings: Settings) -> Iterator[list[Jobs]]:
    """Four services with a database pool each, as four runners on other hosts would be."""
    made = [Jobs(files_settings, Database(files_settings.database_url or "", max_size=6)) for _ in range(4)]
    for one in made:  # every connection open before the race (a pool opens more only as callers wait)
        one.db.pool.resize(min_size=6, max_size=6)
        one.db.pool.wait(timeout=30)
    yield made
    for one in made:
        one.close()


def _race(runners: list[Jobs], writes: list[tuple[str, bytes]]) -> list[str]:
    """Every write at once (a barrier), spread over the runners; the names that were written."""
    barrier, done, lock = threading.Barrier(len(writes)), [], threading.Lock()
    errors: list[BaseException] = []

    def write(i: int, name: str, data: bytes) -> None:
        barrier.wait(timeout=30)
        try:
            runners[i % len(runners)].files.write(THREAD, name, data)
        except ValidationError as exc:
            if "delete files first" not in str(exc):
                errors.append(exc)
            return
        with lock:
            done.append(name)

    workers = [threading.Thread(target=write, args=(i, n, d)) for i, (n, d) in enumerate(writes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers) and errors == []
    return sorted(done)


def test_writers_at_once_on_several_runners_never_pass_the_limits(runners: list[Jobs], service: Jobs) -> None:
    written = _race(runners, [(f"n{i:02}.txt", b"x") for i in range(24)])
    assert len(written) == 10 and _names(service) == written  # RUNNER_MAX_FILES=10, exactly
    for name in written:
        service.files.delete(THREAD, name)
    written = _race(runners, [(f"b{i:02}.bin", b"y" * 200 * KiB) for i in range(16)])
    assert len(written) == 5 and _names(service) == written  # 5 * 200 KiB fit in 1 MiB, 6 do not


def test_a_jobs_script_lives_where_the_setting_says(service: Jobs, files_settings: Settings) -> None:
    row = service.schedule_job(thread_id=THREAD, name="hello", script_text="print('hi')\n", at="in 1 hour")
    assert service.files.read(THREAD, "hello.py") == b"print('hi')\n"
    assert service.read_job_script(row["id"])[0] == "print('hi')\n"
    in_dir = (THREAD.jobs_dir(files_settings.data_dir) / "hello.py").exists()
    assert in_dir == (files_settings.files == "local")
    done = service.approve_script(row["id"], script_text="print('bye')\n")
    assert service.files.read(THREAD, "hello.py") == b"print('bye')\n"
    assert service.get_job(row["id"])["script_sha256"] == done["sha256"]
    service.files.write(THREAD, "hello.py", b"print('edited')\n")  # as an assistant edits it, then approves it
    assert service.approve_script(row["id"])["sha256"] != done["sha256"]
    service.files.delete(THREAD, "hello.py")
    with pytest.raises(ValidationError, match="jobs/hello.py does not exist; give the script"):
        service.read_job_script(row["id"])


def test_in_the_database_a_script_past_the_threads_limit_approves_nothing(settings: Settings, db: Database) -> None:
    service = Jobs(settings.with_(files="postgres", disk_mb=1), db)
    row = service.schedule_job(thread_id=THREAD, name="hello", script_text="print(1)\n", at="in 1 hour")
    sha = service.get_job(row["id"])["script_sha256"]
    service.files.write(THREAD, "fill.bin", b"f" * (1024 * KiB - 20))
    with pytest.raises(ValidationError, match="cannot save jobs/hello.py: the thread's files would hold"):
        service.approve_script(row["id"], script_text="print('a longer script than before')\n")
    assert service.get_job(row["id"])["script_sha256"] == sha, "the approval went with the refused write"
    assert service.files.read(THREAD, "hello.py") == b"print(1)\n"


# --- the store itself: paths, and a run's changes in the caller's transaction ----------------------------

CAPS = FileCaps(file_bytes=1024 * KiB, total_bytes=1024 * KiB, count=10)


def _files(store: Store) -> dict[str, bytes]:
    return {n: c for n, (c, _) in store.thread_files(str(THREAD)).items()}


def test_paths_below_jobs_are_a_tree_and_listed_as_its_directories(db: Database) -> None:
    store, t = Store(db), str(THREAD)
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert store.put_thread_files(t, {"top.txt": b"1", "d/x.txt": b"2", "d/e/y.txt": b"3", "f/z.bin": b"4"}, CAPS,
                                  modified={"top.txt": when}) is None
    listed, dirs = store.list_thread_files(t, 100)
    assert [(f.name, f.size, f.modified) for f in listed] == [("top.txt", 1, when)] and dirs == 2
    assert store.put_thread_files(t, {"d": b"a file now"}, CAPS) is None  # replaces the directory d/ whole
    assert _files(store) == {"top.txt": b"1", "d": b"a file now", "f/z.bin": b"4"}
    assert store.put_thread_files(t, {"top.txt/inner": b"5"}, CAPS) is None  # and a file where a directory goes
    assert _files(store) == {"top.txt/inner": b"5", "d": b"a file now", "f/z.bin": b"4"}
    assert store.delete_thread_file(t, "f") and _files(store) == {"top.txt/inner": b"5", "d": b"a file now"}
    assert store.put_thread_files(t, {"a": b"1", "a/b": b"2"}, CAPS) == "jobs/a cannot be both a file and a directory"
    assert "cannot be kept: each part" in (store.put_thread_files(t, {"../x": b"1"}, CAPS) or "")
    assert "more than the 1 MiB a file may hold" in (store.put_thread_files(t, {"x": b"1" * (1024 * KiB + 1)}, CAPS) or "")
    assert _files(store) == {"top.txt/inner": b"5", "d": b"a file now"}
    assert store.threads_with_files() == [t]


def test_a_runs_changes_commit_and_roll_back_with_the_callers_transaction(db: Database) -> None:
    store, t = Store(db), str(THREAD)
    assert store.put_thread_files(t, {"keep.txt": b"k", "old.txt": b"o", "out/1.txt": b"1"}, CAPS) is None
    with db.transaction() as conn:
        assert store.replace_changed(conn, t, {"new.txt": b"n", "out/2.txt": b"2"}, {"old.txt", "out/1.txt"}, CAPS) is None
        assert _files(store) == {"keep.txt": b"k", "old.txt": b"o", "out/1.txt": b"1"}, "seen before the commit"
    assert _files(store) == {"keep.txt": b"k", "new.txt": b"n", "out/2.txt": b"2"}
    with pytest.raises(RuntimeError), db.transaction() as conn:
        assert store.replace_changed(conn, t, {"lost.txt": b"l"}, {"keep.txt"}, CAPS) is None
        raise RuntimeError("the run's finish failed after its files")
    assert _files(store) == {"keep.txt": b"k", "new.txt": b"n", "out/2.txt": b"2"}


def test_a_runs_changes_past_the_limits_are_refused_whole_and_the_transaction_goes_on(db: Database) -> None:
    store, t = Store(db), str(THREAD)
    assert store.put_thread_files(t, {f"f{i}": b"x" for i in range(8)}, CAPS) is None
    with db.transaction() as conn:
        assert store.put_thread_files(t, {"other.txt": b"written before"}, CAPS, conn=conn) is None  # 9 files
        assert store.replace_changed(conn, t, {"a": b"1", "b": b"2"}, {"f0"}, CAPS) is None  # 10: at the limit
        said = store.replace_changed(conn, t, {"c": b"3", "d": b"4", "e": b"5"}, {"f1"}, CAPS)
        assert said == "the thread's files would be 12, more than its limit of 10: delete files first"
        said = store.replace_changed(conn, t, {"f2": b"z" * (1024 * KiB - 10)}, set(), CAPS)
        assert said is not None and "more than its 1 MiB limit" in said
        conn.execute("SELECT 1")  # the transaction is still good, and commits what was not refused
    assert _files(store) == {"other.txt": b"written before", "a": b"1", "b": b"2",
                             **{f"f{i}": b"x" for i in range(1, 8)}}


@pytest.mark.parametrize("name", [n for n in BAD if isinstance(n, str) and n and "\udce9" not in n])
def test_the_tables_check_refuses_the_names_the_rules_refuse(pg_url: str, name: str) -> None:
    with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO thread_files (thread_id, name, content) VALUES ('telegram:7', %s, '')", (name,))


def test_the_tables_check_takes_the_names_the_rules_take(pg_url: str, db: Database) -> None:
    with psycopg.connect(pg_url) as conn:
        for name in GOOD:
            conn.execute("INSERT INTO thread_files (thread_id, name, content) VALUES ('telegram:7', %s, '')", (name,))
    assert set(Store(db).thread_files(str(THREAD))) == set(GOOD)
