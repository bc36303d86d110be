"""The sampler's programs pass this kernel's verifier with room to spare.

The verifier walks every path it can't prune, up to 1M instructions per program, and how well it prunes
changes between kernels: a program near the limit on one kernel is refused (E2BIG) on the next. The
unwinder's walkers are global functions, each checked once on its own, and its binary search is branch-free,
so the whole chain stays a small fraction of the budget.
"""

from __future__ import annotations

from fleetprof.tracer.sampler import PROGRAMS, Sampler, SamplerOptions

VERIFIER_LIMIT = 1_000_000
# A quarter of the budget: kernels that prune worse than this one still load the sampler.
HEADROOM = 0.25


def test_every_program_verifies_within_a_quarter_of_the_budget() -> None:
    sampler = Sampler(SamplerOptions(frequency_hz=19, unwind_rows=1 << 12, unwind_rules=1 << 8))
    try:
        sampler.load()
        walked = sampler.verified_insns()
    finally:
        sampler.close()
    assert set(walked) == set(PROGRAMS)
    assert all(n > 0 for n in walked.values()), walked
    over = {name: n for name, n in walked.items() if n > HEADROOM * VERIFIER_LIMIT}
    assert not over, f"programs near the verifier's 1M-instruction limit: {over} (all: {walked})"
