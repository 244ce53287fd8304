"""Red team, part 2: what model-written code could do where the namespaces are off (a pod's RuntimeDefault seccomp).

Each way closed has its attack here, run with the strongest isolation this machine allows and without namespaces
(Landlock + seccomp; here, as root, also without the uid layer, since uid 65534 cannot read the interpreter): the
code keeps no capability even as uid 0 (kernel log, host name), gets no System V / POSIX IPC to pass outputs to a
later sample, sets no limit or priority of another process, starts no process, writes no byte to the host's disk,
and cannot switch its per-input time limits off. Each test asserts the observable effect, so that it fails where
the way is open (checked once against the code before these fixes).
"""

from __future__ import annotations

import ctypes
import os
import resource
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from safetax.benchmarks.registry import get_benchmark
from safetax.scoring.code import score_code
from safetax.scoring.sandbox import Isolation, isolation, probe, run_untrusted
from safetax.scoring.sandbox.caps import SECUREBITS

TASK = "HumanEval/0"
SOLVE = "any(abs(a - b) < threshold for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)"
ERRNO = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def e(name, ret):
    print(name, 0 if ret >= 0 else ctypes.get_errno())
"""


@pytest.fixture(scope="module", params=["strongest", "without-namespaces"])
def iso(request: pytest.FixtureRequest) -> Isolation:
    return isolation() if request.param == "strongest" else probe(disable=["namespaces"])


@pytest.fixture(scope="module")
def humaneval(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, object, Path]:
    b = get_benchmark("humanevalplus")
    item = next(i for i in b.load(str(shared_data / b.default_path)) if i.id == TASK)
    return b.tasks, item, tmp_path_factory.mktemp("redteam-iso-cache")


def score(humaneval: tuple[dict, object, Path], codes: list[str], iso: Isolation) -> list[tuple[float | None, str]]:
    tasks, item, cache = humaneval
    responses = [f"r\n</think>\n\n```python\n{c}\n```" for c in codes]
    got = score_code(responses, [item] * len(codes), tasks, "humaneval", cache_dir=cache, iso=iso, workers=1,
                     task_timeout_s=10)
    return [(s.value, s.reason) for s in got]


def results(program: str, iso: Isolation) -> dict[str, str]:
    res = run_untrusted(ERRNO + program, 20.0, iso=iso)
    assert res.returncode == 0, res.stderr[-800:]
    return dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)


def test_no_capabilities_even_as_uid_0(iso: Isolation) -> None:
    program = """
class H(ctypes.Structure): _fields_ = [("v", ctypes.c_uint32), ("pid", ctypes.c_int)]
class D(ctypes.Structure): _fields_ = [("e", ctypes.c_uint32), ("p", ctypes.c_uint32), ("i", ctypes.c_uint32)]
d = (D * 2)()
e("capget", libc.capget(ctypes.byref(H(0x20080522, 0)), d))
print("caps", [d[0].e, d[1].e, d[0].p, d[1].p, d[0].i, d[1].i])
print("bounding", sum(1 << c for c in range(64) if libc.prctl(23, c, 0, 0, 0) > 0))
print("securebits", libc.prctl(27, 0, 0, 0, 0))
print("uid", os.getuid())
name = os.uname().nodename.encode()
e("sethostname", libc.sethostname(name, len(name)))
e("klogctl", libc.klogctl(10, None, 0))  # SYSLOG_ACTION_SIZE_BUFFER
e("settimeofday", libc.syscall(%d, None, None))  # NULL, NULL: changes nothing where it is allowed
"""
    got = results(program % (170 if os.uname().machine == "aarch64" else 164), iso)
    assert got["capget"] == "0" and got["caps"] == "[0, 0, 0, 0, 0, 0]", got
    assert got["sethostname"] == got["klogctl"] == got["settimeofday"] == "1", got  # EPERM
    if os.geteuid() == 0:  # the scorer could empty the bounding set and lock the securebits
        assert got["bounding"] == "0" and int(got["securebits"]) == SECUREBITS, got


def test_no_capabilities_with_no_layer_at_all() -> None:
    """The capabilities are dropped by the jail itself, not by a layer that a machine may refuse."""
    got = results('print("eff", open("/proc/self/status").read().split("CapEff:")[1].split()[0])\n', Isolation())
    assert int(got["eff"], 16) == 0


def test_ipc_is_denied(iso: Isolation) -> None:
    key = secrets.randbelow(1 << 30) + 1
    mq_open = 180 if os.uname().machine == "aarch64" else 240
    program = f"""
e("shmget", libc.shmget({key}, 4096, 0o1000 | 0o600))  # IPC_CREAT
e("msgget", libc.msgget({key}, 0o1000 | 0o600))
e("semget", libc.semget({key}, 1, 0o1000 | 0o600))
e("mq_open", libc.syscall({mq_open}, b"safetax{key}", 0o100 | 2, 0o600, None))  # O_CREAT | O_RDWR
"""
    try:
        got = results(program, iso)
        assert got == {"shmget": "1", "msgget": "1", "semget": "1", "mq_open": "1"}, got
    finally:  # what the attack made where it is open
        subprocess.run(["ipcrm", "-M", str(key), "-Q", str(key), "-S", str(key)], capture_output=True, check=False)
        ctypes.CDLL(None).syscall(mq_open + 1, f"safetax{key}".encode())  # mq_unlink


def test_two_samples_cannot_pass_outputs_through_shared_memory(humaneval: tuple, iso: Isolation) -> None:
    key = secrets.randbelow(1 << 30) + 1
    seg = f"""
import ctypes, json
_c = ctypes.CDLL(None, use_errno=True); _c.shmat.restype = ctypes.c_void_p
def _seg(create):
    sid = _c.shmget({key}, 1 << 20, (0o1000 if create else 0) | 0o666)
    return None if sid < 0 else _c.shmat(sid, None, 0)
"""
    writer = seg + f"""
def has_close_elements(numbers, threshold):
    return {SOLVE}
import __main__
_s = json.loads(__main__.SPEC)
_ans = json.dumps({{repr(x): has_close_elements(*x) for g in ("base", "plus") for x in _s["inputs"][g]}}).encode()
_p = _seg(True)
if _p:
    ctypes.memmove(_p, _ans + b"\\0", len(_ans) + 1)
"""
    reader = seg + """
_p = _seg(False)
_ans = json.loads(ctypes.string_at(_p).decode()) if _p else {}
def has_close_elements(numbers, threshold):
    return _ans.get(repr([numbers, threshold]))
"""
    try:
        (w, w_reason), (r, r_reason) = score(humaneval, [writer, reader], iso)
        assert w == 1.0, w_reason
        assert r == 0.0, f"the reader passed on a sibling's outputs: {r_reason}"
    finally:
        subprocess.run(["ipcrm", "-M", str(key)], capture_output=True, check=False)


def test_no_limits_or_priority_of_another_process(iso: Isolation) -> None:
    target = subprocess.Popen(["sleep", "60"])  # a process of the scorer's uid, as the scorer is
    try:
        before = resource.prlimit(target.pid, resource.RLIMIT_NOFILE)
        pid = target.pid
        program = f"""
import resource
def t(name, f):
    try:
        f()
        print(name, "ok")
    except OSError as x:
        print(name, x.errno)
t("prlimit_other", lambda: resource.prlimit({pid}, resource.RLIMIT_NOFILE, (8, 8)))
t("setpriority_other", lambda: os.setpriority(os.PRIO_PROCESS, {pid}, 19))
t("affinity_other", lambda: os.sched_setaffinity({pid}, {{0}}))
t("prlimit_self", lambda: resource.prlimit(0, resource.RLIMIT_NOFILE, (64, 64)))
t("setrlimit_self", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32)))
t("nice_self", lambda: os.setpriority(os.PRIO_PROCESS, 0, 1))
t("affinity_self", lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)))
"""
        got = results(program, iso)
        assert {k: got[k] for k in ("prlimit_self", "setrlimit_self", "nice_self", "affinity_self")} == \
            dict.fromkeys(("prlimit_self", "setrlimit_self", "nice_self", "affinity_self"), "ok"), got
        assert "ok" not in {got[k] for k in ("prlimit_other", "setpriority_other", "affinity_other")}, got
        assert resource.prlimit(target.pid, resource.RLIMIT_NOFILE) == before
        assert os.getpriority(os.PRIO_PROCESS, target.pid) == 0
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 8  # the scorer's own
    finally:
        target.kill()
        target.wait()


def test_no_new_process(iso: Isolation) -> None:
    marker = f"91.{secrets.randbelow(10**9)}"
    program = f"""
try:
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", "{marker}"])
    print("fork", "ok")
except OSError as x:
    print("fork", x.errno)
"""
    got = results(program, iso)
    assert got == {"fork": "11"}, got  # EAGAIN, as RLIMIT_NPROC gives a non-root uid
    time.sleep(0.2)
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker.encode() in _read(p)]


def _read(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError:
        return b""


def test_disk_fill_is_bounded(iso: Isolation) -> None:
    program = """
n = 0
for name in ("f0", "f1", "f2", "f3", "f4", os.environ["TMPDIR"] + "/f5", "/tmp/safetax-fill-%d" % os.getpid()):
    try:
        with open(name, "wb") as f:
            for _ in range(16):
                n += f.write(b"\\0" * ((1 << 20) - 1))
    except OSError as x:
        print("error", x.errno)
print("bytes", n)
"""
    got = results(program, iso)
    if iso.namespaces:
        assert int(got["bytes"]) <= 64 << 20, got  # the run's own tmpfs
    else:
        assert got["bytes"] == "0", got  # the host's disk: not a byte
    assert not list(Path("/tmp").glob("safetax-fill-*"))


def test_zero_bytes_per_file_without_namespaces_even_without_landlock() -> None:
    """Where Landlock is refused too, the code may still not grow a file (RLIMIT_FSIZE 0)."""
    got = results('try:\n    print("wrote", open("x", "wb", buffering=0).write(b"y" * 4096))\nexcept OSError as x:\n'
                  '    print("wrote", x.errno)\n', Isolation(seccomp=True))
    assert got == {"wrote": "27"}, got  # EFBIG


SLOW = """
import time
_n = [0]
def has_close_elements(numbers, threshold):
    _n[0] += 1
    end = time.monotonic() + (7 if _n[0] == 1 else 0)  # one input far over its limit (1 s)
    while time.monotonic() < end:
        try:
            time.sleep(0.1)
        except:  # noqa: E722 - a bare except also swallows the harness's timeout
            pass
    return %s
""" % SOLVE


@pytest.mark.parametrize("bypass", ["sig_ign", "bare_except"])
def test_per_input_time_limit_holds_when_the_alarm_is_switched_off(humaneval: tuple, iso: Isolation,
                                                                   bypass: str) -> None:
    code = ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n" if bypass == "sig_ign" else "") + SLOW
    [(value, reason)] = score(humaneval, [code], iso)
    assert value == 0.0 and reason.startswith("base:timeout"), reason
    assert "scorer's clock" in reason, reason
