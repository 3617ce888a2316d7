"""Prefect's temporary API server dies with the process that started it.

``fld round`` runs flows against Prefect's ephemeral local API, which Prefect starts as a child
process (``SubprocessASGIServer``) and stops at exit. Killed with SIGKILL, the parent never gets
to stop it, and the server (~200 MB) would run on 127.0.0.1 forever. :func:`guard_server` makes
the server's command start a watchdog thread first: once its parent is gone (its parent pid
changes: it was re-parented) it exits. The rest of the command is Prefect's own (``python -m
uvicorn ...``), run through ``runpy``.

The server also runs in a session of its own: a terminal's Ctrl-C (SIGINT to the whole
foreground process group) must not stop it before the interrupted flow has recorded its state
through it (the flow would wait on a dead server for ever); Prefect stops it at exit.
"""

from __future__ import annotations

#: run in the server process before uvicorn: poll the parent pid once a second
WATCHDOG = (
    "import os, runpy, sys, threading, time\n"
    "parent = os.getppid()\n"
    "def watch():\n"
    "    while os.getppid() == parent:\n"
    "        time.sleep(1.0)\n"
    "    os._exit(0)\n"
    "threading.Thread(target=watch, daemon=True, name='fld-parent-watchdog').start()\n"
    "sys.argv = ['uvicorn', *sys.argv[1:]]\n"
    "runpy.run_module('uvicorn', run_name='__main__', alter_sys=True)\n"
)


def guarded_args(args: list[str]) -> list[str]:
    """``[python, -m, uvicorn, ...]`` -> ``[python, -c, WATCHDOG, ...]`` (other commands unchanged)."""
    if len(args) >= 3 and args[1:3] == ["-m", "uvicorn"]:
        return [args[0], "-c", WATCHDOG, *args[3:]]
    return list(args)


def guard_server() -> None:
    """Patch Prefect's ephemeral server launch (idempotent)."""
    import subprocess

    from prefect.server.api import server

    launcher = server.SubprocessASGIServer._run_uvicorn_command
    if getattr(launcher, "fld_guarded", False):
        return
    real_popen = subprocess.Popen

    def run_guarded(self):  # noqa: ANN001, ANN202 (Prefect's method)
        def popen(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            kwargs["start_new_session"] = True  # out of reach of a Ctrl-C meant for the round
            if "args" in kwargs:
                kwargs["args"] = guarded_args(list(kwargs["args"]))
            elif args:
                args = (guarded_args(list(args[0])), *args[1:])
            return real_popen(*args, **kwargs)

        server.subprocess.Popen = popen
        try:
            return launcher(self)
        finally:
            server.subprocess.Popen = real_popen

    run_guarded.fld_guarded = True
    server.SubprocessASGIServer._run_uvicorn_command = run_guarded

