"""The launcher in every job container, run as ``python3 -u -c <this file's source> DUE SCRIPT SOURCE...``.

It runs a job's script the way `python3 jobs/x.py` would (__main__, sys.argv, exit code, traceback), but
never before the due time DUE (seconds since the epoch; 0: at once). The script's source is the rest of
the arguments (chunks, each under the kernel's 128 KiB limit per argument): the bytes the runner read
and checked against the approved sha256 (runner/pinning.py). It never reads jobs/x.py, which any job of
the thread can rewrite, and it puts neither jobs/ nor the working directory on sys.path, so a file
another job writes there (jobs/json.py) cannot shadow a module the script imports.

The container is started a little early so the engine's start-up is over by then. It imports nothing
beyond what Python starts with, and prints tracebacks with the interpreter's own C hook: a fork bomb's
64 copies must not each pay for runpy or the traceback module. Importing this file runs nothing.
"""

import os
import sys
import time


def launch() -> None:
    due, script = float(sys.argv[1]), sys.argv[2]
    code = compile("".join(sys.argv[3:]), script, "exec")
    while (left := due - time.time()) > 0:
        time.sleep(min(left, 1.0))
    sys.argv = [script]
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    main = type(sys)("__main__")
    main.__file__ = script
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        sys.__excepthook__(type(exc), exc.with_traceback(tb), tb)
        sys.exit(1)


if __name__ == "__main__":
    launch()
