"""Two ranks of a gloo process group on CPU, forked from the test process (a second or two)."""
import multiprocessing
import traceback

import torch
from net import free_port


def in_two_ranks(worker, *args, timeout=60):
    """``worker(rank, *args)`` on ranks 0 and 1; per rank ``("ok", result)`` or ``("error", "Type: message")``."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Manager().dict()
    port = free_port()

    def main(rank):
        import torch.distributed as dist

        torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork: a parallel op would hang
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        try:
            try:
                results[rank] = ("ok", worker(rank, *args))
            except Exception as e:  # noqa: BLE001 - any failure is reported back to the parent test
                results[rank] = ("error", f"{type(e).__name__}: {e}", traceback.format_exc())
        finally:
            dist.destroy_process_group()

    procs = [ctx.Process(target=main, args=(r,)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.exitcode is None:
            p.kill()
    assert all(p.exitcode == 0 for p in procs), "a rank hung or crashed"
    return [results[r][:2] for r in range(2)]


def results_of(outcomes):
    """The ranks' results, failing the test with a rank's own error line if one raised."""
    errors = [o[1] for o in outcomes if o[0] != "ok"]
    assert not errors, errors[0]
    return [o[1] for o in outcomes]
