"""Run a stranger's model in a limited child process: memory, CPU, file size and open files capped, killed
after a wall-clock timeout, no network, a scratch working folder, a clean environment, stdin closed.

The child is a fresh ``python`` started with :mod:`subprocess` (not ``multiprocessing``): the spawn start
method would re-run the user's ``__main__`` in the child and hand it the parent's environment, while a plain
interpreter started here gets only what this module gives it. It limits itself before it imports anything
(a network namespace needs a single-threaded process; ``setrlimit`` from ``preexec_fn`` is unsafe in a
training process with threads), and stays up for every call of one ``verify`` or ``convert`` run.

Requests go to the child pickled (the parent trusts its own child); replies come back as JSON, so a model that
took the child over cannot make the parent run code. Large bytes in a request (a model file verify read once,
:class:`~mlm_export._model_bytes.ModelBytes`) travel out of band, each in one piece, and the first call raises
the child's memory cap by their size: the model's own budget is not spent on the bytes it is loaded from.
This module imports only the standard library at its top: the child loads it before torch, before its limits
are in place.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GiB = 1 << 30
MiB = 1 << 20

#: Memory a call may use beyond what the child's runtime (Python, torch, onnxruntime) maps at start
#: (``max_memory=``, ``--max-memory``); enforced as the child's address space (``RLIMIT_AS``).
MAX_MEMORY = 2 * GiB
#: The same for ``convert``, which rebuilds, traces and writes model files of the user's own checkpoints.
MAX_MEMORY_CONVERT = 8 * GiB
#: Wall-clock seconds one call may take before the child is killed (``timeout=``, ``--timeout``); the CPU
#: time of a call (``RLIMIT_CPU``, all threads together) is capped at this times the number of cores.
TIMEOUT = 600.0
#: Largest file the child may write (``RLIMIT_FSIZE``).
MAX_FILE_SIZE = 4 * GiB
#: Files the child may hold open (``RLIMIT_NOFILE``).
MAX_OPEN_FILES = 1024
#: Wall-clock seconds the child may take to start (Python, torch and the package imported), at least.
STARTUP_TIMEOUT = 180.0
#: Largest reply the parent reads from the child.
MAX_REPLY = 64 * MiB
#: Modules the child imports before measuring its runtime's memory (optional ones may be missing).
PRELOAD = ("torch", "onnxruntime", "mlm_export")
#: Environment variables the child gets from the parent when downloads are allowed (proxies, caches).
DOWNLOAD_ENV = (
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME",
)  # fmt: skip
#: Messages of allocation failures (torch, onnxruntime, C++, the OS): the call ran out of memory.
_OOM_SIGNS = (
    "can't allocate memory",
    "cannot allocate memory",
    "failed to allocate memory",
    "bad_alloc",
    "out of memory",
    "memoryerror",
)


@dataclass(frozen=True)
class Limits:
    """What the child may use; every call of one run shares them."""

    #: Bytes beyond the runtime's own (see :data:`MAX_MEMORY`).
    memory: int = MAX_MEMORY
    #: Wall-clock seconds per call (see :data:`TIMEOUT`).
    timeout: float = TIMEOUT
    file_size: int = MAX_FILE_SIZE
    open_files: int = MAX_OPEN_FILES
    #: Let the child reach the network (``download=True``); off: no socket to the internet, no name lookup.
    network: bool = False

    @property
    def cpu_seconds(self) -> int:
        return math.ceil(self.timeout * (os.cpu_count() or 1)) + 1


def out_of_memory(text: str) -> bool:
    """Whether an error message says an allocation failed."""
    low = text.lower()
    return any(sign in low for sign in _OOM_SIGNS)


def size_of(text: str) -> int:
    """``2G``, ``512M``, ``1.5GiB`` or a number of bytes -> bytes (the ``--max-memory`` value)."""
    units = {"": 1, "K": 1 << 10, "M": MiB, "G": GiB, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in units and t[-1:] else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError as e:
        raise ValueError(f"{text!r} is not a size (e.g. 2G, 512M or bytes)") from e
    if not value > 0:
        raise ValueError(f"{text!r} is not a positive size")
    return int(value * units[unit])


def human(size: int) -> str:
    """Bytes as the user would write them: ``2 GiB``, ``512 MiB``."""
    return f"{size / GiB:g} GiB" if size >= GiB else f"{size / MiB:g} MiB"


class Child:
    """One limited child process that runs functions of this package; restarted after it was killed.

    ``with Child(limits, what="the model of x.json") as child: child.call("mlm_export._verify:run_models", ...)``
    """

    def __init__(self, limits: Limits | None = None, *, what: str = "the model") -> None:
        self.limits = limits or Limits()
        self.what = what
        self._proc: subprocess.Popen[bytes] | None = None
        self._scratch: Path | None = None
        self._send = -1
        self._receive = -1
        self._up = False
        self._started = 0.0
        #: Seconds the last start took (interpreter, torch and the package imported, limits applied).
        self.startup_seconds = 0.0

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, target: str, *args: Any, **kwargs: Any) -> Any:
        """``module:function`` of this package called in the child; its JSON result, or a one-line error.

        Out-of-band bytes of the first call (see the module's docstring) raise the child's memory cap by their
        size; those of later calls count against it.
        """
        request = _request(target, args, kwargs)
        if self._proc is None:
            self.launch()
        if not self._up:
            self._handshake(extra=sum(b.raw().nbytes for b in request[1]))
        return self._call(self.limits.timeout, request)

    def launch(self) -> None:
        """Start the child without waiting for it: it imports torch while the caller checks files."""
        if self._proc is None:
            self._start()

    def _call(self, timeout: float, request: tuple[bytes, list[pickle.PickleBuffer]]) -> Any:
        payload, buffers = request
        try:
            _write_frame(self._send, len(buffers).to_bytes(8, "big") + payload)
            for buffer in buffers:
                _write_frame(self._send, buffer.raw())
        except (BrokenPipeError, OSError):
            raise self._died() from None
        deadline = time.monotonic() + timeout
        try:
            reply = _read_frame(self._receive, deadline)
        except TimeoutError:
            self._kill()
            from .errors import IsolatedTimeoutError

            raise IsolatedTimeoutError(self.what, timeout) from None
        except EOFError:
            raise self._died() from None
        except ValueError as e:  # a reply too large or not a frame: the child is not trusted any more
            self._kill()
            from .errors import IsolatedRunError

            raise IsolatedRunError(f"{self.what}: the child process sent a malformed reply ({e})") from None
        return self._result(reply)

    def close(self) -> None:
        """End the child (it exits when its request pipe closes; killed if it does not, or if it is still
        starting: launched, never used) and remove its folder."""
        proc, self._proc = self._proc, None
        up, self._up = self._up, False
        if proc is not None:
            with contextlib.suppress(OSError):
                os.close(self._send)
            with contextlib.suppress(OSError):
                os.close(self._receive)
            try:
                proc.wait(timeout=5 if up else 0)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # ------------------------------------------------------------------------------------------ parent side

    def _start(self) -> None:
        self._started = time.monotonic()
        self._scratch = Path(tempfile.mkdtemp(prefix="mlm-export-child-"))
        (self._scratch / "tmp").mkdir()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        config = {
            "module": str(Path(__file__).resolve()),
            "path": _import_path(),
            "read": to_child_r,
            "write": from_child_w,
            "memory": self.limits.memory,
            "cpu": self.limits.cpu_seconds,
            "file_size": self.limits.file_size,
            "open_files": self.limits.open_files,
            "network": self.limits.network,
            "scratch": str(self._scratch),
        }
        log = open(self._scratch / "child.log", "wb")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and bootstrap, no shell
                [sys.executable, "-s", "-c", _BOOT, json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self._scratch,
                env=_environment(self._scratch, network=self.limits.network),
                pass_fds=(to_child_r, from_child_w),
                start_new_session=True,  # its own process group: a kill ends whatever it started too
            )
        finally:
            log.close()
            os.close(to_child_r)
            os.close(from_child_w)
        self._send, self._receive = to_child_w, from_child_r

    def _handshake(self, extra: int = 0) -> None:
        """Wait for the child's start, hand it the parent's import finders and set its memory cap (``extra``
        bytes above the limits' memory: the out-of-band bytes of the call that follows)."""
        finders = [f for f in sys.meta_path if type(f).__module__.startswith("mlm_export.")]
        last = [f for f in finders if sys.meta_path.index(f) > 0]  # the CLI's finders for the cwd's modules
        first = [f for f in finders if f not in last]
        try:
            ready = _request("mlm_export._isolate:_ready", (first, last, self.limits.memory + extra), {})
            self._call(max(self.limits.timeout, STARTUP_TIMEOUT), ready)
        except Exception:
            self._kill()
            raise
        self._up = True
        self.startup_seconds = time.monotonic() - self._started

    def _result(self, reply: bytes) -> Any:
        from .errors import IsolatedMemoryError, IsolatedRunError

        try:
            data = json.loads(reply)
        except (ValueError, RecursionError) as e:  # a child taken over may send anything: never crash the parent
            self._kill()
            raise IsolatedRunError(f"{self.what}: the child process sent a reply that is not JSON ({e})") from None
        if not isinstance(data, dict):
            self._kill()
            raise IsolatedRunError(f"{self.what}: the child process sent a malformed reply")
        if data.get("ok"):
            return data.get("value")
        message = str(data.get("message", ""))[:1000]
        if data.get("kind") == "memory":
            raise IsolatedMemoryError(self.what, self.limits.memory)
        raise IsolatedRunError(f"{self.what}: {data.get('type', 'Error')}: {message}")

    def _died(self) -> Exception:
        """The error for a child that ended without replying: a memory, CPU or other crash."""
        from .errors import IsolatedCrashError, IsolatedMemoryError, IsolatedTimeoutError

        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                code = proc.returncode
        tail = self._log_tail()
        self._kill()
        if code is not None and code < 0 and -code == signal.SIGXCPU:
            return IsolatedTimeoutError(self.what, self.limits.timeout, cpu=True)
        if out_of_memory(tail) or (code is not None and code < 0 and -code == signal.SIGKILL):
            return IsolatedMemoryError(self.what, self.limits.memory)
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return IsolatedCrashError(self.what, how, tail.strip().splitlines()[-1][:200] if tail.strip() else "")

    def _log_tail(self) -> str:
        if self._scratch is None:
            return ""
        try:
            with open(self._scratch / "child.log", "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _kill(self) -> None:
        if self._proc is not None:
            _kill_group(self._proc)
        self.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _import_path() -> list[str]:
    """The parent's import path (so the child imports this same ``mlm_export`` and the user's model package)."""
    package_parent = str(Path(__file__).resolve().parents[1])
    entries = [package_parent]
    for entry in sys.path:
        full = os.path.abspath(entry or os.curdir)
        if full not in entries and os.path.exists(full):
            entries.append(full)
    return entries


def _environment(scratch: Path, *, network: bool) -> dict[str, str]:
    """Only what the child needs: no proxies (unless downloads are allowed), home and temp in its folder."""
    env = {
        "PATH": os.defpath,
        "HOME": str(scratch),
        "TMPDIR": str(scratch / "tmp"),
        "LANG": "C.UTF-8",
        "MLM_EXPORT_OFFLINE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",  # each malloc arena reserves address space the memory cap counts
    }
    if network:
        env.update({k: v for k, v in os.environ.items() if k in DOWNLOAD_ENV})
        env.setdefault("XDG_CACHE_HOME", str(Path.home() / ".cache"))  # downloads land where the user's go
    else:
        env.update(HF_HUB_OFFLINE="1", TORCH_HOME=str(scratch / "torch"))
    return env


def _request(target: str, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """A call pickled for the child (protocol 5), and the bytes that travel out of band after it."""
    from .errors import current_flags

    flags = current_flags()  # the child spells options in its messages as the parent would
    buffers: list[pickle.PickleBuffer] = []
    call = (target, tuple(args), kwargs, dict(flags) if flags is not None else None)
    return pickle.dumps(call, protocol=5, buffer_callback=buffers.append), buffers


def _write_frame(fd: int, data: bytes | memoryview) -> None:
    """A length, then the data (a large buffer is written as it is, never copied)."""
    view = memoryview(len(data).to_bytes(8, "big"))
    while view:
        view = view[os.write(fd, view) :]
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view[: 1 << 24]) :]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None = None, limit: int = MAX_REPLY) -> bytes:
    size = int.from_bytes(_read_exact(fd, 8, deadline), "big")
    if size > limit:
        raise ValueError(f"a reply of {size} bytes, more than {limit}")
    return _read_exact(fd, size, deadline)


def _read_blob(fd: int) -> bytes:
    """An out-of-band frame of a request as one ``bytes`` object filled in place: no chunks joined into a second
    copy, so the memory cap counts it once. A reader of buffer size 1 reads nothing beyond the frame."""
    size = int.from_bytes(_read_exact(fd, 8, None), "big")
    data = io.BufferedReader(io.FileIO(fd, "rb", closefd=False), buffer_size=1).read(size)
    if len(data) != size:
        raise EOFError
    return data


def _read_request(fd: int) -> Any:
    """The next call from the parent (its out-of-band bytes read after it); ``EOFError`` when the parent is done."""
    frame = _read_frame(fd, None, limit=1 << 40)
    count = int.from_bytes(frame[:8], "big")
    buffers = [_read_blob(fd) for _ in range(count)]
    return pickle.loads(memoryview(frame)[8:], buffers=buffers)  # noqa: S301 - written by our parent


# ---------------------------------------------------------------------------------------------- child side

#: The child's first lines: load this module under its own name (before the package, before torch), then run.
_BOOT = """
import importlib.util, json, sys
config = json.loads(sys.argv[1])
spec = importlib.util.spec_from_file_location("mlm_export._isolate", config["module"])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module._child_main(config)
"""


def _child_main(config: dict[str, Any]) -> None:
    """Limit this process, import the runtime, cap its memory above what that took, then serve calls."""
    _die_with_parent()
    if not config["network"]:
        _network_namespace()
    _lower(resource.RLIMIT_FSIZE, config["file_size"])
    _lower(resource.RLIMIT_NOFILE, config["open_files"])
    _lower(resource.RLIMIT_CORE, 0)
    sys.path[:0] = config["path"]
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
    # the memory cap (RLIMIT_AS) is set by the first call, _ready, before any other: it carries the size of the
    # bytes the parent hands over with the call that follows. Nothing but this package's imports ran so far.
    if not config["network"]:
        sys.addaudithook(_no_network)
    _serve(int(config["read"]), int(config["write"]), int(config["cpu"]))


def _serve(read: int, write: int, cpu: int) -> None:
    ready = False
    while True:
        try:
            target, args, kwargs, flags = _read_request(read)
        except EOFError:
            return
        if not ready and target != "mlm_export._isolate:_ready":
            raise SystemExit("the first call must be _ready (it sets the memory cap)")
        ready = True
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = math.ceil(used.ru_utime + used.ru_stime)
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        soft = spent + cpu if hard == resource.RLIM_INFINITY else min(spent + cpu, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))  # SIGXCPU ends a call that spins
        try:
            module, _, name = str(target).partition(":")
            if not module.startswith("mlm_export."):
                raise ValueError(f"{target} is not a function of mlm_export")
            function: Callable[..., Any] = getattr(__import__(module, fromlist=[name]), name)
            from mlm_export.errors import flag_spelling

            with flag_spelling(flags) if flags is not None else contextlib.nullcontext():
                reply: dict[str, Any] = {"ok": True, "value": function(*args, **kwargs)}
        except MemoryError:
            reply = {"ok": False, "kind": "memory", "type": "MemoryError", "message": ""}
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent as data
            text = str(e).strip().splitlines()
            kind = "memory" if out_of_memory(f"{type(e).__name__}: {e}") else "error"
            reply = {"ok": False, "kind": kind, "type": type(e).__name__, "message": text[0] if text else ""}
        try:
            data = json.dumps(reply, default=str).encode()
        except (TypeError, ValueError) as e:
            data = json.dumps({"ok": False, "kind": "error", "type": type(e).__name__, "message": str(e)}).encode()
        _write_frame(write, data)


def _ready(first: Sequence[Any], last: Sequence[Any], memory: int) -> int:
    """The first call: the parent's own import finders (the CLI's modules of the current folder) in place, and
    the memory cap: ``memory`` bytes above what the runtime (Python, torch, the package) maps now."""
    sys.meta_path[:0] = list(first)
    sys.meta_path.extend(last)
    _lower(resource.RLIMIT_AS, _address_space() + int(memory))
    return os.getpid()


def _lower(limit: int, value: int) -> None:
    """Set a limit (soft and hard) to ``value``, or keep the one inherited where that is lower already."""
    _, hard = resource.getrlimit(limit)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(limit, (value, value))


def conditions() -> dict[str, Any]:
    """What a call in the child sees: its folder, environment, limits, stdin and network (for a diagnosis)."""
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=1).close()
        network = "connected"
    except Exception as e:  # noqa: BLE001 - the refusal itself is the answer
        network = f"{type(e).__name__}: {e}"
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")
    }
    return {
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "limits": limits,
        "stdin": os.readlink("/proc/self/fd/0") if os.path.exists("/proc/self/fd/0") else None,
        "network": network,
        "runtime": _address_space(),
        "pid": os.getpid(),
    }


def _address_space() -> int:
    """This process's mapped address space in bytes (``VmSize``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the parent dies (a crashed parent leaves no model running)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _network_namespace() -> None:
    """Linux: a network namespace of its own (only a loopback that is down), where the kernel allows one.

    Needs CAP_SYS_ADMIN or unprivileged user namespaces; where neither is allowed, the audit hook below is the
    block. Called while the process has one thread (a user namespace requires it).
    """
    unshare = getattr(os, "unshare", None)
    if unshare is None:
        return
    newnet, newuser = getattr(os, "CLONE_NEWNET", 0x40000000), getattr(os, "CLONE_NEWUSER", 0x10000000)
    try:
        unshare(newnet)
        return
    except OSError:
        pass
    uid, gid = os.getuid(), os.getgid()
    try:
        unshare(newuser | newnet)
    except OSError:
        return
    with contextlib.suppress(OSError):  # map our own ids, so files we write keep their owner
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


_INET = (socket.AF_INET, socket.AF_INET6)
_LOOKUPS = {
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
}


def _no_network(event: str, args: tuple[Any, ...]) -> None:
    """An audit hook of the child: no internet socket, no name lookup (the child is ours to limit)."""
    if event == "socket.__new__" and len(args) > 1 and args[1] in _INET:
        _refuse(f"a new {socket.AddressFamily(args[1]).name} socket")
    elif event in _LOOKUPS:
        _refuse(f"{args[0]}:{args[1]}" if event == "socket.getaddrinfo" and len(args) > 1 else str(args[0]))
    elif event in ("socket.connect", "socket.sendto") and getattr(args[0], "family", None) in _INET:
        _refuse(str(args[1]))


def _refuse(address: str) -> None:
    from mlm_export.errors import DownloadRefusedError

    raise DownloadRefusedError(address)


@contextlib.contextmanager
def child(limits: Limits | None = None, *, what: str = "the model") -> Iterator[Child]:
    """A :class:`Child` ended (and its folder removed) on leaving."""
    c = Child(limits, what=what)
    try:
        yield c
    finally:
        c.close()
