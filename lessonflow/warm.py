"""Run pipeline stages in a warm interpreter: the libraries are imported once, not once per stage.

On few cores most of a small stage is importing torch and friends, so ``python -m stages.<verb>``
hands the stage to a server of the same interpreter that has imported them (never lessonflow, so
edited code always runs) and forks one child per stage with the caller's streams, folder,
environment, ``sys.path`` and umask; the caller forwards signals and exits with the child's status.
The socket is named after the interpreter, its packages and ``PYTHONPATH``; ``LESSONFLOW_WARM=off``,
a non-Linux system or any failure to reach the server runs the stage in its own process instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
from pathlib import Path

SWITCH_ENV = "LESSONFLOW_WARM"
# A file to which each handed-off stage appends one JSON line of where its time went (benchmarks/overhead.py)
TIMES_ENV = "LESSONFLOW_STAGE_TIMES"
# Every stage that logs opens DVCLive, which opens the DVC repository: dvc.repo, its git backends
# (scmrepo, dulwich) and the modules a repository's first opening imports (its cache, locks,
# config) are loaded once here instead of in every child. ``pydantic`` imports its models lazily,
# and every stage reads params.yaml through them (what each saves: BENCHMARKS.md, issue 16).
PRELOAD = ("numpy", "torch", "torch.optim", "torch._dynamo", "matplotlib.pyplot", "pandas", "dvclive",
           "dvc.repo", "dvc.scm", "scmrepo.git", "dulwich.repo", "dulwich.porcelain", "dulwich.worktree",
           "dvc.cachemgr", "dvc.data_cloud", "dvc.lock", "dvc.rwlock", "dvc_data.fs", "configobj", "flufl.lock",
           "zc.lockfile", "platformdirs", "pydantic", "pydantic.main", "pydantic.fields", "pydantic.types", "yaml",
           "tqdm", "PIL.Image", "PIL.JpegImagePlugin", "PIL.PngImagePlugin", "matplotlib.backends.backend_agg",
           "sklearn.datasets", "sklearn.linear_model", "threadpoolctl")
# Read by the BLAS and OpenMP runtimes once, when they load: the server loads them without these,
# and each stage applies its caller's values itself (``_cap_threads``).
THREAD_ENVS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
IDLE_SECONDS = 60.0
START_TIMEOUT = 120.0
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
OWN_PACKAGES = ("lessonflow", "stages")


def enabled() -> bool:
    """On Linux only: macOS system libraries are not safe to use in a forked child (why Python spawns there)."""
    return os.environ.get(SWITCH_ENV, "on").lower() not in ("0", "off", "false", "no") and sys.platform == "linux"


def socket_path() -> Path:
    """One server per interpreter, installed-package set and PYTHONPATH, in a folder only this user can open."""
    site = sysconfig.get_paths()["purelib"]
    key = json.dumps([sys.executable, sys.version, site, os.stat(site).st_mtime_ns, os.environ.get("PYTHONPATH", "")])
    folder = Path(tempfile.gettempdir()) / f"lessonflow-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise OSError(f"{folder} is not private to this user")
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.sock"


# ---------------------------------------------------------------- the caller's side

def hand_off() -> None:
    """Run this ``python -m stages.<verb>`` in the warm server and exit with the stage's status.

    Returns only when the stage should run in this process instead: switched off, or no
    server could be reached (said on stderr). Once the server has started the stage, this
    process only waits for it: a stage never runs twice.
    """
    module = launched_module()
    if not enabled() or module is None:
        return
    entered = time.monotonic()
    try:
        path = socket_path()
        for _ in range(2):  # a server that was just idling out may drop the connection unanswered: once more
            with _connect(path) as conn:
                child = _submit(conn, module)
                if child is not None:
                    forked = time.monotonic()
                    status = _wait_for(conn, child)
                    _record_times(module, entered, forked)
                    _exit_like(status)
        raise OSError("the warm server closed the connection twice without taking the stage")
    except OSError as err:
        print(f"lessonflow: running the stage without the warm server ({err})", file=sys.stderr)


def _record_times(module: str, entered: float, forked: float) -> None:
    """With ``LESSONFLOW_STAGE_TIMES`` set: this stage's start-up (the interpreter's own start, the imports
    before the hand-off, reaching the server) and the forked child's time (the stage module's imports and its work)."""
    target = os.environ.get(TIMES_ENV)
    if not target:
        return
    ended = time.monotonic()
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: start time
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    record = {"stage": " ".join([module, *sys.argv[1:]]), "startup": round(age - (ended - forked), 3),
              "before_hand_off": round(age - (ended - entered), 3), "child": round(ended - forked, 3)}
    with contextlib.suppress(OSError), open(target, "a") as out:
        out.write(json.dumps(record) + "\n")


def launched_module() -> str | None:
    """``stages.<verb>`` when this interpreter was started as ``python [options] -m stages.<verb> …``."""
    args = sys.orig_argv[1:]
    for index, arg in enumerate(args):
        module = args[index + 1] if arg == "-m" and index + 1 < len(args) else arg[2:] if arg.startswith("-m") else None
        if module is not None:
            return module if module.startswith("stages.") else None
    return None


def _connect(path: Path) -> socket.socket:
    """Connect, starting a server whenever none holds the lock (one that was stopping may have just let go)."""
    deadline = time.monotonic() + START_TIMEOUT
    next_start, server = 0.0, None
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(path))
            return conn
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
        now = time.monotonic()
        if now > deadline:
            raise OSError(f"no warm server answered at {path} within {START_TIMEOUT:.0f} s; see {path.with_suffix('.log')}")
        if now >= next_start and not _server_alive(path):
            if server is not None and server.poll() not in (None, 0):
                raise OSError(f"the warm server failed to start; see {path.with_suffix('.log')}")
            server = _start_server(path)
            next_start = now + 1.0
        time.sleep(0.05)


def _server_alive(path: Path) -> bool:
    """A live (or starting) server holds the lock file for its whole life."""
    with open(path.with_suffix(".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def _start_server(path: Path) -> subprocess.Popen:
    env = {name: value for name, value in os.environ.items() if name not in THREAD_ENVS}
    with open(path.with_suffix(".log"), "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "lessonflow.warm", "serve", str(path)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, env=env, start_new_session=True, close_fds=True)


def _submit(conn: socket.socket, module: str) -> int | None:
    """Send the request and this process's standard streams; the server answers with the child's pid."""
    streams = {name: {"encoding": stream.encoding, "errors": stream.errors, "line_buffering": stream.line_buffering,
                      "write_through": stream.write_through}
               for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr))}
    umask = os.umask(0)
    os.umask(umask)
    request = {"module": module, "argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path,
               "umask": umask, "streams": streams}
    fds = [fd if _is_open(fd) else os.open(os.devnull, os.O_RDWR) for fd in (0, 1, 2)]
    socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], fds)
    try:
        line = _read_line(conn)
    except ConnectionResetError:
        return None
    return int(line) if line else None


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _wait_for(conn: socket.socket, child: int) -> int:
    """Forward the signals a terminal or DVC sends to this process to the stage, until the stage ends."""
    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    line = _read_line(conn)
    if not line:
        print("lessonflow: the warm server stopped before reporting how the stage ended", file=sys.stderr)
        return 1 << 8  # exit status 1
    return int(line)


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = conn.recv(64)
        except InterruptedError:
            continue
        if not chunk:
            return ""
        data += chunk
    return data.decode().strip()


def _exit_like(status: int) -> None:
    """Leave with the child's exit code, or die of the same signal that killed it."""
    sys.stdout.flush()
    sys.stderr.flush()
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


# ---------------------------------------------------------------- the server

def serve(path: Path) -> None:
    lock = open(path.with_suffix(".lock"), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another server got there first
    # Started from the first stage's folder, a server that stayed there would keep a user's project
    # busy for as long as it lives; each stage's child takes its own caller's folder anyway.
    os.chdir("/")
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a library that does not load is simply imported by the stage
            print(f"warm server: not preloading {name}: {err}", file=sys.stderr, flush=True)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        print("warm server: a preloaded library started CUDA, which a forked stage cannot use; not serving",
              file=sys.stderr, flush=True)
        return
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    children: dict[int, socket.socket] = {}
    last_active = time.monotonic()
    stopping = False  # after a `stop` request: no new stages; the running ones still get their answer
    try:
        while children or (not stopping and time.monotonic() - last_active < IDLE_SECONDS):
            ready, _, _ = select.select([] if stopping else [listener], [], [], 0.1)
            if _reap(children):
                last_active = time.monotonic()
            if not ready:
                continue
            conn, _ = listener.accept()
            last_active = time.monotonic()
            request, fds = _receive(conn)
            if request is None or request.get("module") == "stop":
                conn.close()
                for fd in fds:
                    os.close(fd)
                if request is not None:  # let go of socket and lock now: a new server may start at once
                    path.unlink(missing_ok=True)
                    listener.close()
                    lock.close()
                    stopping = True
                continue
            pid = os.fork()
            if pid == 0:
                for held in (listener, lock, *children.values()):
                    held.close()
                _run_child(conn, request, fds)  # never returns
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)  # also done by the child: signals forwarded to its group must find it
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(f"{pid}\n".encode())
            children[pid] = conn
    finally:
        if not stopping:
            path.unlink(missing_ok=True)
            listener.close()
        lock.close()


def _receive(conn: socket.socket) -> tuple[dict | None, list[int]]:
    data, fds = b"", []
    while not data.endswith(b"\n"):
        chunk, new_fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        fds += new_fds
        if not chunk:
            return None, fds
        data += chunk
    return json.loads(data), fds


def _reap(children: dict[int, socket.socket]) -> int:
    """Tell the caller of every finished stage its exit status; returns how many finished."""
    finished = 0
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        conn = children.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(f"{status}\n".encode())
            conn.close()
            finished += 1
    return finished


def _run_child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """Become the process ``python -m <module>`` would have been, run it, and exit with its status."""
    code = 1
    try:
        os.setpgid(0, 0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[SWITCH_ENV] = "off"  # this process *is* the stage: stages/__init__.py must not hand it off again
        sys.argv[:] = request["argv"]
        sys.path[:] = request["path"]
        _reopen_streams(request["streams"])
        for name in [name for name in sys.modules if name.split(".")[0] in OWN_PACKAGES]:
            del sys.modules[name]
        importlib.invalidate_caches()
        _cap_threads()
        threading.Thread(target=_die_with_caller, args=(conn,), daemon=True).start()
        code = _run_module(request["module"])
    except BaseException:  # noqa: BLE001 - the child could not become the stage: say why, where stderr now goes
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _cap_threads() -> None:
    """What ``OMP_NUM_THREADS`` & co. would have done had the libraries loaded in this process."""
    caps = [int(os.environ[name]) for name in THREAD_ENVS if os.environ.get(name, "").isdigit()]
    if not caps or min(caps) < 1:
        return
    if "threadpoolctl" in sys.modules:
        sys.modules["threadpoolctl"].threadpool_limits(min(caps))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(min(caps))


def _run_module(module: str) -> int:
    import runpy

    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:  # noqa: BLE001 - reported as python itself would, then the exit status says it failed
        traceback.print_exc()
        return 1


def _reopen_streams(streams: dict) -> None:
    """Standard streams with the caller's encoding and buffering (a terminal is line-buffered, a pipe is not)."""
    sys.stdin = sys.__stdin__ = io.open(0, "r", closefd=False)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        spec = streams[name]
        stream = io.open(fd, "w", buffering=1 if spec["line_buffering"] else -1, encoding=spec["encoding"],
                         errors=spec["errors"], closefd=False)
        stream.reconfigure(write_through=spec["write_through"])
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _die_with_caller(conn: socket.socket) -> None:
    """The caller never sends anything more: any return of recv means it is gone, and so must the stage be."""
    try:
        conn.recv(1)
    finally:
        os.killpg(0, signal.SIGKILL)


def stop() -> bool:
    """Ask this environment's server to exit now (tests, and anyone who wants the memory back)."""
    try:
        path = socket_path()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(path))
            conn.sendall(json.dumps({"module": "stop"}).encode() + b"\n")
            conn.recv(1)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["stop"]:
        print("stopped" if stop() else "no warm server was running")
    else:
        sys.exit("usage (internal): python -m lessonflow.warm serve <socket> | python -m lessonflow.warm stop")
