"""Per-stage overhead of KFP's local runner (target < 0.5 s): a no-op task vs a direct call of its function."""


import tempfile
import time

from kfp import dsl, local


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def noop(x: int) -> int:
    return x + 1


@dsl.pipeline(name="overhead")
def chain(n: int = 0):
    t = noop(x=n)
    for _ in range(4):
        t = noop(x=t.output)


def main() -> None:
    tasks = 5
    with tempfile.TemporaryDirectory() as root:
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
        chain()  # warm-up
        t0 = time.perf_counter()
        chain()
        t_kfp = (time.perf_counter() - t0) / tasks
    t0 = time.perf_counter()
    for i in range(tasks):
        noop.python_func(x=i)
    t_direct = (time.perf_counter() - t0) / tasks
    overhead = t_kfp - t_direct
    print(f"KFP local task: {t_kfp:.3f}s   direct call of the same function: {t_direct * 1e6:.1f}us")
    print(f"overhead per stage: {overhead:.3f}s = {overhead / 0.5:.2f}x the 0.5s budget")
    print("PASS" if overhead < 0.5 else "FAIL")


if __name__ == "__main__":
    main()
