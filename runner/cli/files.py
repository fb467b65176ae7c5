"""``runner files ls|cat|put|rm``: the files of a thread's ``jobs/``, where a job reads its input and
leaves its ``<name>_output.json``. Locally through the service's files (the store ``RUNNER_FILES``
names: the data directory or the database; the rules of the API: no link followed, plain names, size
caps, the thread's limits), remotely through the client: the same verbs, the same output.

``runner files migrate --to postgres|local [--thread T]`` copies threads' files from the data directory
into the database or back (:mod:`runner.service.filemigrate`); only beside the database.

What ``cat`` prints may be what a job wrote: to a terminal its control characters are shown (as
everywhere else, :func:`runner.text.visible`); to a pipe or a file the bytes go as they are."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ValidationError
from ..settings import Settings
from ..text import visible
from .format import cell, print_json
from .jobs import open_jobs

if TYPE_CHECKING:
    from ..service.filemigrate import Copied
    from ..service.filestore import FileBackend
    from ..threads import ThreadId


class FileStore(Protocol):
    """A thread's jobs/ (the typed client is one)."""

    def list_files(self) -> list[str]: ...
    def read_file(self, name: str) -> bytes: ...
    def write_file(self, name: str, data: bytes | str) -> None: ...
    def delete_file(self, name: str) -> None: ...


class LocalFiles:
    """A thread's jobs/ on this host, as a :class:`FileStore`."""

    def __init__(self, files: FileBackend, thread: ThreadId) -> None:
        self.files, self.thread = files, thread

    def list_files(self) -> list[str]:
        return [f.name for f in self.files.list(self.thread).files]

    def read_file(self, name: str) -> bytes:
        return self.files.read(self.thread, name)

    def write_file(self, name: str, data: bytes | str) -> None:
        self.files.write(self.thread, name, data.encode("utf-8") if isinstance(data, str) else data)

    def delete_file(self, name: str) -> None:
        self.files.delete(self.thread, name)


def _ls(args: argparse.Namespace, store: FileStore) -> int:
    names = store.list_files()
    if args.json:
        print_json(names)
    elif not names:
        print("no files in jobs/")
    else:
        print("\n".join(cell(n) for n in names))
    return 0


def _cat(args: argparse.Namespace, store: FileStore) -> int:
    data = store.read_file(args.name)
    if sys.stdout.isatty():
        text = visible(data.decode("utf-8", errors="replace"))
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def _source(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ValidationError(f"{path} does not exist: check the path") from None
    except IsADirectoryError:
        raise ValidationError(f"{path} is a directory: give a file") from None
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from None


def _put(args: argparse.Namespace, store: FileStore) -> int:
    data = _source(args.source)
    store.write_file(args.name, data)
    print(f"wrote jobs/{args.name} ({len(data)} bytes)")
    return 0


def _rm(args: argparse.Namespace, store: FileStore) -> int:
    store.delete_file(args.name)
    print(f"removed jobs/{args.name}")
    return 0


VERBS = {"ls": _ls, "cat": _cat, "put": _put, "rm": _rm}


def _checked(args: argparse.Namespace) -> None:
    from ..service.files import check_name

    if getattr(args, "name", None) is not None:
        check_name(args.name)  # here too, so that both modes refuse a name with the same sentence


def cmd_files(args: argparse.Namespace, settings: Settings) -> int:
    """The local mode: the jobs/ of ``--thread`` in this runner's store (RUNNER_FILES)."""
    from ..threads import ThreadId

    if args.files_command == "migrate":
        return _migrate(args, settings)
    _checked(args)
    thread = ThreadId.parse(args.thread)
    with open_jobs(settings) as jobs:
        return VERBS[args.files_command](args, LocalFiles(jobs.files, thread))


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ..service.filemigrate import migrate_files
    from ..threads import ThreadId

    thread = ThreadId.parse(args.thread) if args.thread is not None else None
    with open_jobs(settings) as jobs:
        copied = migrate_files(settings, jobs.store, args.to, thread)
    for one in copied:
        show_copied(one, args.to)
    if not copied:
        print("no thread has files to copy" if thread is None else f"thread {thread} has no files to copy")
    refused = [c.thread for c in copied if c.refused]
    return 1 if refused else 0


def show_copied(one: Copied, to: str) -> None:
    """One thread's copy, in a line, then a line for each file not copied."""
    where = "the database" if to == "postgres" else "the data directory"
    if one.refused:
        print(visible(f"{one.thread}: not copied: {one.refused}", one_line=True))
    else:
        files = "file" if one.copied == 1 else "files"
        print(f"{one.thread}: {one.copied} {files} copied to {where}, {one.unchanged} already there")
    for line in one.skipped:
        print(visible(f"  not copied: {line}", one_line=True))


def remote(args: argparse.Namespace, client: Any) -> int:
    """The remote mode: the jobs/ of the client's thread."""
    _checked(args)  # (``files migrate`` never comes here: runner.cli.remote refuses it first)
    return VERBS[args.files_command](args, client)


def add_parser(sub: Any) -> None:
    """``runner files …`` under the subcommands ``sub``."""
    fl = sub.add_parser("files", help="the files of a thread's jobs/: ls, cat, put, rm")
    fsub = fl.add_subparsers(dest="files_command", required=True, parser_class=type(fl))
    ls = fsub.add_parser("ls", help="the plain files' names")
    ls.add_argument("--json", action="store_true")
    cat = fsub.add_parser("cat", help="a file's bytes on standard output")
    put = fsub.add_parser("put", help="write a file (replaced whole)")
    rm = fsub.add_parser("rm", help="delete a file")
    for p in (cat, put, rm):
        p.add_argument("name", help="its name in jobs/, e.g. input.json")
    put.add_argument("source", nargs="?", default="-", help="the file to copy there ('-', the default: standard input)")
    mg = fsub.add_parser("migrate", help="copy threads' files from the data directory to the database, or back")
    mg.add_argument("--to", required=True, choices=["postgres", "local"],
                    help="postgres: into the database (RUNNER_FILES=postgres); local: into the data directory")
    mg.add_argument("--thread", help="only this thread (default: every thread the source holds)")
    mg.set_defaults(func=cmd_files, thread_optional=True)
    for p in (ls, cat, put, rm):
        p.add_argument("--thread", help="thread id, e.g. telegram:42 (with --url: only for an admin token)")
        p.set_defaults(func=cmd_files)
