"""The sandbox's layers one by one (what each stops on its own), its deadlines, output cap and probing."""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import time
from pathlib import Path

import pytest

from safetax.scoring.sandbox import Isolation, SandboxError, isolation, probe, run_untrusted
from safetax.scoring.sandbox import execute, layers, seccomp
from safetax.scoring.sandbox.layers import LAYERS

TRY = """
import os, socket
def t(name, f):
    try:
        f()
        print(name, "ok")
    except BaseException as e:
        print(name, "denied", type(e).__name__)
"""


def only(layer: str) -> Isolation:
    """The probed isolation with every other layer switched off; skips when ``layer`` is refused here."""
    iso = probe(disable=[x for x in LAYERS if x != layer])
    if not iso.has(layer):
        pytest.skip(f"{layer} not available here: {iso.notes}")
    return iso


def outcomes(program: str, iso: Isolation, **kw: int) -> dict[str, str]:
    res = run_untrusted(TRY + program, 20.0, iso=iso, **kw)
    return dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)


def marked(marker: str) -> list[int]:
    """PIDs of the processes whose command line holds ``marker`` (ours: a random sleep duration)."""
    pids = []
    for c in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            pids += [int(c.parent.name)] if marker.encode() in c.read_bytes() else []
        except OSError:
            pass
    return pids


def alive(marker: str) -> bool:
    deadline = time.monotonic() + 2.0  # a process SIGKILLed a moment ago may not have exited yet
    while marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(marked(marker))


@pytest.fixture()
def host(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A world-readable file, a world-writable directory and a TCP listener outside the sandbox."""
    secret = tmp_path / "secret"
    secret.write_text("s")
    secret.chmod(0o644)
    (tmp_path / "open").mkdir(mode=0o777)
    (tmp_path / "open").chmod(0o777)
    tmp_path.chmod(0o755)
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.3)
    yield {"read": str(secret), "write": str(tmp_path / "open" / "x"), "port": srv.getsockname()[1], "srv": srv}
    srv.close()


def attempts(host: dict) -> str:
    return (f"t('read', lambda: open({host['read']!r}).read())\n"
            f"t('write', lambda: open({host['write']!r}, 'w').write('x'))\n"
            f"t('tcp', lambda: socket.create_connection(('127.0.0.1', {host['port']}), 2))\n"
            "t('proc', lambda: open('/proc/1/status').read())\n"
            "t('cwd', lambda: open('mine', 'w').write('x'))\n")


def no_connection(srv: socket.socket) -> bool:
    try:
        srv.accept()
        return False
    except TimeoutError:
        return True


def test_strongest_isolation_here_and_scorer_not_dumpable() -> None:
    iso = isolation()
    assert iso.describe()
    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 0  # PR_GET_DUMPABLE: no process of our uid can read us
    assert iso.hides_host_files and iso.seccomp, iso.describe()  # else the red-team suite fails too


def test_namespaces_alone(host: dict) -> None:
    got = outcomes(attempts(host), only("namespaces"))
    assert got == {"read": "denied FileNotFoundError", "write": "denied FileNotFoundError",
                   "tcp": "denied OSError", "proc": "denied FileNotFoundError", "cwd": "ok"}
    assert no_connection(host["srv"]) and not Path(host["write"]).exists()


def test_landlock_alone(host: dict) -> None:
    iso = only("landlock")
    got = outcomes(attempts(host), iso)
    tcp = "denied PermissionError" if iso.landlock >= 4 else "ok"
    assert got == {"read": "denied PermissionError", "write": "denied PermissionError", "tcp": tcp,
                   "proc": "denied PermissionError", "cwd": "denied PermissionError"}  # the host's disk
    assert not Path(host["write"]).exists()


def test_seccomp_alone() -> None:
    program = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               "def unshare_net():\n    if libc.unshare(0x40000000):\n"
               "        raise PermissionError(ctypes.get_errno())\n"
               "def ptrace_me():\n    if libc.ptrace(0, 0, 0, 0):\n        raise PermissionError(ctypes.get_errno())\n"
               "t('socket', socket.socket)\nt('setsid', os.setsid)\nt('unshare', unshare_net)\n"
               "t('ptrace', ptrace_me)\nt('pair', socket.socketpair)\n")
    got = outcomes(program, only("seccomp"))
    assert got == {"socket": "denied PermissionError", "setsid": "denied PermissionError",
                   "unshare": "denied PermissionError", "ptrace": "denied PermissionError", "pair": "ok"}


def test_seccomp_filters_build_for_each_architecture() -> None:
    for machine in ("x86_64", "aarch64"):
        prog = seccomp.program(machine)
        assert prog[0] == (0x20, 0, 0, 4) and prog[-1] == (0x06, 0, 0, 0x7FFF0000)  # arch checked first, allow last
        assert len(prog) < 4096


def test_uid_alone(host: dict) -> None:
    if os.geteuid() != 0:
        pytest.skip("uid 65534 is used only when the scorer is root")
    got = outcomes("t('uid', lambda: 1 / (os.getuid() == 65534))\nt('fork', os.fork)\n"
                   "t('root_env', lambda: open('/proc/1/environ').read())\n", only("uid"))
    assert got == {"uid": "ok", "fork": "denied BlockingIOError", "root_env": "denied PermissionError"}


def test_pid_namespace_kills_an_escaped_grandchild_holding_stdout() -> None:
    marker = f"77.{secrets.randbelow(10**9)}"
    program = ("import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', %r])\n"
               "print('parent done')\n" % marker)
    res = run_untrusted(program, 20.0, iso=only("namespaces"), processes=64)
    assert res.stdout == "parent done\n" and res.wall_s < 5 and not res.timed_out
    assert not alive(marker)


def test_no_wait_on_a_pipe_an_escaped_process_holds() -> None:
    """Without a PID namespace or seccomp a setsid grandchild can survive: the scorer still returns at once."""
    marker = f"78.{secrets.randbelow(10**9)}"
    program = ("import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', %r])\n" % marker)
    try:
        res = run_untrusted(program, 20.0, iso=Isolation(), processes=64)
        assert res.wall_s < 5 and not res.timed_out
    finally:
        for pid in marked(marker):  # the escapee this test made, by its PID
            os.kill(pid, signal.SIGKILL)


def test_timeout_kills_the_tree_and_output_is_capped() -> None:
    res = run_untrusted("import os\nos.fork() if hasattr(os, 'fork') else None\nwhile True: pass\n", 1.0,
                        processes=64)
    assert res.timed_out and res.returncode is None and res.wall_s < 5
    res = run_untrusted("import sys\nwhile True: sys.stdout.write('x' * 65536)\n", 20.0, max_output=1 << 20)
    assert res.truncated and len(res.stdout) == 1 << 20 and res.wall_s < 10


def test_numpy_imports_in_the_sandbox() -> None:
    res = run_untrusted("import numpy\nprint(numpy.ones(3).sum())\n", 30.0)
    assert res.stdout == "3.0\n", res.stderr


def test_a_setup_failure_is_the_scorers_error_not_a_score(monkeypatch: pytest.MonkeyPatch) -> None:
    iso = only("landlock")
    monkeypatch.setattr(execute, "read_paths", lambda: ("/usr", "/bad\0path"))
    with pytest.raises(SandboxError, match="landlock: .*null"):
        run_untrusted("print(1)", 10.0, iso=iso)
    monkeypatch.undo()
    res = run_untrusted("import os, sys\nos.write(2, b'fail landlock: forged')\nsys.exit(120)\n", 10.0)
    assert res.returncode == 120  # the code cannot make the scorer believe its sandbox failed


def test_required_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layers, "_current", None)
    monkeypatch.setattr(layers, "probe", lambda disable=(): Isolation(seccomp=True))
    monkeypatch.setenv("SAFETAX_SANDBOX_REQUIRE", "seccomp,namespaces")
    with pytest.raises(SandboxError, match="namespaces"):
        isolation()
    monkeypatch.setenv("SAFETAX_SANDBOX_REQUIRE", "netns")
    with pytest.raises(ValueError, match="unknown layer.*netns"):
        isolation()
    monkeypatch.setenv("SAFETAX_SANDBOX_REQUIRE", "seccomp")
    assert isolation() == Isolation(seccomp=True)
