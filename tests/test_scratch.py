"""Per-thread scratch buffers: reused by name within a thread, never shared across threads, bounded."""

from __future__ import annotations

import threading

import numpy as np

from lossvar import scratch as sc


def _in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.update(fn()))
    t.start()
    t.join()
    return out


def test_a_name_reuses_its_memory_and_grows_to_the_largest_request():
    def work():
        a = sc.scratch("test-reuse", (4, 5))
        b = sc.scratch("test-reuse", 20, np.int64)  # the same bytes, another dtype and shape
        c = sc.scratch("test-reuse", np.int64(7))
        big = sc.scratch("test-reuse", (100,))  # larger: a new buffer, kept from now on
        again = sc.scratch("test-reuse", [10, 10])
        held = sc.scratch_nbytes()["this_thread_bytes"]
        sc.release_scratch()
        return dict(same=np.shares_memory(a, b) and np.shares_memory(a, c),
                    shapes=(a.shape, b.shape, b.dtype, c.shape), grew=not np.shares_memory(a, big),
                    kept=np.shares_memory(big, again), contiguous=again.flags.c_contiguous,
                    held=held, after=sc.scratch_nbytes()["this_thread_bytes"])

    got = _in_thread(work)
    assert got["same"] and got["grew"] and got["kept"] and got["contiguous"]
    assert got["shapes"] == ((4, 5), (20,), np.dtype(np.int64), (7,))
    assert got["held"] == 800 and got["after"] == 0


def test_threads_never_share_a_buffer():
    barrier = threading.Barrier(2)
    seen = []

    def work():
        buf = sc.scratch("test-threads", 1000)
        buf[:] = threading.get_ident()
        barrier.wait()  # both threads hold their buffer at once
        seen.append(bool((buf == threading.get_ident()).all()))
        sc.release_scratch()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [True, True]


def test_scratch_is_bounded_per_thread_and_reported(monkeypatch):
    monkeypatch.setattr(sc, "SCRATCH_LIMIT", 1 << 20)

    def work():
        a = sc.scratch("test-a", (1000,))
        big = sc.scratch("test-big", (1 << 18,))  # 2 MiB: over the cap, not kept
        out = dict(kept=sc.scratch("test-a", 1000).base is a.base,
                   big_kept=big.base is not None,  # kept buffers are views of the pool's
                   held=sc.scratch_nbytes()["this_thread_bytes"])
        big[:] = 1.0
        sc.release_scratch()
        return out

    got = _in_thread(work)
    assert got["kept"] and not got["big_kept"] and got["held"] <= 1 << 20
    info = sc.scratch_nbytes()
    assert info["bytes"] >= info["max_thread_bytes"] >= info["this_thread_bytes"] >= 0
