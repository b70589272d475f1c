"""Check and time the warp-specialised Gluon kernels (triton_kernels/simplicial_attention_gluon.py) on the GPU.

    python benchmarks/gluon_kernels.py --check     # the forward's outputs and LSE against our tl forward, bf16
    python benchmarks/gluon_kernels.py             # that check, then each forward config timed against tl and SDPA
    python benchmarks/gluon_kernels.py --dq --dk1  # each backward kernel against its tl one (checked, then timed)
    python benchmarks/gluon_kernels.py --ab        # the default forward against an alternative, alternating rounds
    python benchmarks/gluon_kernels.py --stress    # the forward (two window classes) and the dK1/dV1 kernel 40 times
                                                   # each in fp16 and bf16: a launch that differs shows a race

A config is a launch config of a Gluon kernel (BLOCK_M, BLOCK_N, NUM_BUF K1/V1 buffers, V2_BUF V2 buffers, NUM_F
formed operand buffers, PAIRED, PACKED, CONSUMERS, SPLIT, DQ_ATOMIC, num_warps of a consumer, maxnreg at launch); the
package's own are simplicial_attention's GLUON_*_CONFIG. The experiment's history (a one-warp producer, two consumer
warpgroups, pipelined consumers, conditional rescaling: all slower or wrong) is in
benchmarks/results/gluon-2026-11-27.md, where this script still has its first name, gluon_forward.py; those kernels
are in git history (e3c4c39 to c51c36d).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchmarks.bench_attention import inputs, sdpa, sdpa_equal_length, sdpa_flops, valid_triples  # noqa: E402
from tests.test_kernels import as_accurate, make_inputs, rel_err  # noqa: E402
from triton_kernels import simplicial_attention as sa  # noqa: E402
from triton_kernels import simplicial_attention_gluon as gluon_kernels  # noqa: E402


def gluon_forward(q, k1, k2, v1, v2, w1, w2, sm_scale, **cfg):
    """(out, lse, compiled kernel) of triton_kernels/simplicial_attention_gluon.py with launch config cfg."""
    b, n, hq, d = q.shape
    out = torch.empty_like(q)
    lse = torch.empty((b, hq, n), device=q.device, dtype=torch.float32)
    kernel = gluon_kernels.forward(q, k1, k2, v1, v2, min(w1, n), min(w2, n), sm_scale * sa._LOG2E, out, lse, cfg)
    return out, lse, kernel


CHECK_SHAPES = [  # (B, N, Hq, Hkv, D, w1, w2): batch and window edges, GQA, both head dims, the target shape
    (2, 300, 4, 2, 64, 40, 16),
    (1, 1000, 2, 1, 128, 100, 8),
    (2, 2048, 4, 4, 64, 512, 32),
    (1, 4096, 4, 1, 128, 512, 32),
    (4, 8192, 8, 8, 64, 512, 32),
    (1, 13, 1, 1, 128, 6, 3),  # fewer query tiles than the second dK1/dV1 consumer's first one (it hung there)
    (2, 2048, 4, 2, 64, 128, 128),  # w2 > w1, 16 offset groups per packed query group
    (2, 2048, 4, 2, 128, 128, 128),
    (2, 1000, 4, 2, 128, 256, 64),  # two query groups per window: the last one's second group past the end
]


def random_case(b, n, hq, hkv, d):
    """bf16 q [b, n, hq, d], k1, k2, v1, v2 [b, n, hkv, d] and an upstream gradient dO like q, seeded."""
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, n, hq, d, device="cuda", dtype=torch.bfloat16, generator=g)
    ks = [torch.randn(b, n, hkv, d, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)]
    return q, ks, torch.randn(b, n, hq, d, device="cuda", dtype=torch.bfloat16, generator=g)


def tl_references(q, ks, w1, w2, scale, override):
    """The tl forward's (out, lse) on the 16-bit inputs, under CONFIG_OVERRIDE `override`, and its out on the same
    inputs in fp32: what a Gluon forward's LSE must match and its output be as close to as the tl kernel's."""
    sa.CONFIG_OVERRIDE["fwd"] = override
    ref, ref_lse = sa._forward(q, *ks, w1, w2, scale)
    exact, _ = sa._forward(q.float(), *(k.float() for k in ks), w1, w2, scale)
    sa.CONFIG_OVERRIDE.clear()
    return ref, ref_lse, exact


def check(configs, repeat=3) -> bool:
    """Each config against the tl forward on CHECK_SHAPES, `repeat` launches each (a synchronisation race shows as
    a launch that differs): the tl kernel's LSE within 1e-3, and outputs as accurate as its (as_accurate)."""
    ok = True
    for shape in CHECK_SHAPES:
        b, n, hq, hkv, d, w1, w2 = shape
        q, ks, _ = random_case(b, n, hq, hkv, d)
        scale = 1 / math.sqrt(d)
        ref, ref_lse, exact = tl_references(q, ks, w1, w2, scale, {"GLUON": False})
        ref_err = rel_err(ref, exact)
        for cfg in configs[d]:
            err = lerr = 0.0
            finite = True
            try:
                for _ in range(repeat):
                    out, lse, _ = gluon_forward(q, ks[0], ks[1], ks[2], ks[3], w1, w2, scale, **cfg)
                    err = max(err, rel_err(out, exact))
                    lerr = max(lerr, (lse - ref_lse).abs().max().item())
                    finite &= torch.isfinite(out).all().item()
            except (triton.runtime.errors.OutOfResources, ValueError) as exc:
                print(f"check {shape} {cfg}: does not fit or apply ({exc})", flush=True)
                continue
            good = as_accurate(err, ref_err) and lerr < 1e-3 and finite
            ok &= good
            print(f"check {shape} {cfg}: max over {repeat} launches: out rel err vs fp32 {err:.2e} (tl {ref_err:.2e}), "
                  f"lse max abs err {lerr:.2e} {'ok' if good else 'FAIL'}", flush=True)
    return ok


SHAPES = [(8192, 512, 32), (8192, 256, 64), (8192, 128, 128), (2048, 512, 32), (8192, 1024, 16)]  # (N, w1, w2)


def bench(configs, rep=50, shapes=SHAPES) -> None:
    """Each config against the tl forward and SDPA (FLOP-equal causal length), B=4, H=8, bf16, per shape class."""
    for (n, w1, w2), d in ((shape, d) for shape in shapes for d in (64, 128) if configs[d]):
        xs = inputs(n, 8, 8, d, requires_grad=False)  # B=4, H=8 as bench_attention's grid
        fl = 4 * 4 * 8 * d * valid_triples(n, w1, w2)
        scale = 1 / math.sqrt(d)
        sa.CONFIG_OVERRIDE["fwd"] = {"GLUON": False}  # the baseline is the tl kernel (its fallback)
        t_tl = triton.testing.do_bench(lambda: sa._forward(*xs, w1, w2, scale), warmup=10, rep=rep,
                                       return_mode="median")
        sa.CONFIG_OVERRIDE.clear()
        n_eq = sdpa_equal_length(n, w1, w2)
        s_f = min(sdpa(n_eq, d, rep, "default")[0], sdpa(n_eq, d, rep, "flash")[0])
        s_tf = sdpa_flops(n_eq, d) / s_f / 1e9
        print(f"\n### D={d}, B=4, H=8, N={n}, (w1, w2)=({w1}, {w2}), bf16; SDPA (faster backend) at N_eq={n_eq}: "
              f"{s_tf:.0f} TF/s")
        print("| kernel | config | ms | TF/s | / SDPA | / Triton tl | regs | spills |")
        print("|---|---|---|---|---|---|---|---|")
        tl_tf = fl / t_tl / 1e9
        k = sa.LAUNCHED["fwd"]
        print(f"| Triton tl (ours, v5) | default | {t_tl:.3f} | {tl_tf:.0f} | {tl_tf / s_tf:.2f} | 1.00 "
              f"| {k.n_regs} | {k.n_spills} |", flush=True)
        for cfg in configs[d]:
            try:
                _, _, kern = gluon_forward(*xs, w1, w2, scale, **cfg)
                t = triton.testing.do_bench(lambda: gluon_forward(*xs, w1, w2, scale, **cfg), warmup=10, rep=rep,
                                            return_mode="median")
                tf = fl / t / 1e9
                print(f"| Gluon WS | {cfg} | {t:.3f} | {tf:.0f} | {tf / s_tf:.2f} | {tf / tl_tf:.2f} "
                      f"| {kern.n_regs} | {kern.n_spills} |", flush=True)
            except Exception as exc:  # noqa: BLE001
                print(f"| Gluon WS | {cfg} | failed: {type(exc).__name__}: {str(exc)[:200]} | | | | | |", flush=True)


# --ab: the package's default forward against alternatives, per head dim, in alternating rounds of one process
# (H100 timings drift 4-6% under sustained load, so one config timed after another is not a comparison). Each
# alternative is (name, w1 -> config, or None where it does not apply).
_PK = dict(PACKED=True, QUERIES=8, TAIL=16, BLOCK_M=64, BLOCK_N=64, num_warps=4, maxnreg=128)  # 8 queries x 8 offsets
_RES = dict(_PK, RESIDENT=True)  # every resident alternative names its maxnreg


def _opaque_slots(d, on=True):
    """The default resident kernels with the window's first slots and tail indexed through an opaque zero
    (OPAQUE_SLOTS: fewer spills, compile_report), or with on=False as constants (v13's form; the D=128 default
    since v14 is opaque)."""
    def alternative(w1, w2):
        cfg = sa.gluon_fwd_config(d, w1)
        if not cfg.get("RESIDENT") or cfg.get("OPAQUE_SLOTS", False) == on:
            return None
        return dict(cfg, OPAQUE_SLOTS=on)
    return alternative


def _resident(**keys):
    """A resident-window config, where its window fits (simplicial_attention_gluon.check_packed_config)."""
    cfg = dict(_RES, **keys)

    def alternative(w1, w2):
        try:
            gluon_kernels.check_packed_config(w1, w2, cfg)
        except ValueError:
            return None
        return cfg
    return alternative


# packed rows, two consumers (one query group each) over one K1 / V1 ring streamed once per offset group for both:
# the D=128 default at w1 >= 258 since v15
_SHARED_RING = dict(sa.gluon_fwd_config(128, 258))


def _beside_streamed_ring(d, pick):
    """pick(w1, w2) where the default forward at head dim d streams its window (not RESIDENT)."""
    def alternative(w1, w2):
        return None if sa.gluon_fwd_config(d, w1).get("RESIDENT") else pick(w1, w2)
    return alternative


def _query_tiles(w1, w2):
    """v14's D=128 default at w1 >= 258, which the shared streamed ring replaced: query tiles of 64 rows, at
    w1 >= 512 two consumers on one ring (_G2), with K1 tiles of 128 at w1 >= 1024."""
    if w1 >= 1024:
        return dict(_G2, BLOCK_N=128, NUM_BUF=2)
    return dict(_G2, BLOCK_N=64, NUM_BUF=3) if w1 >= 512 else dict(_G, BLOCK_N=64, NUM_BUF=2)


def _one_group(base, max_w2=64):
    """The packed config `base` with rows that hold all w2 offsets of BLOCK_M // w2 queries (ONE_GROUP: one offset
    group, so the offset accumulator is the output's and the second fp32 accumulator goes), where w2 <= max_w2
    divides BLOCK_M."""
    def alternative(w1, w2):
        if base["BLOCK_M"] % w2 or w2 > max_w2:
            return None
        return dict(base, QUERIES=base["BLOCK_M"] // w2, ONE_GROUP=True)
    return alternative


AB_ALTERNATIVES = {  # v15 (results/attention-2026-11-28-v15.md): one offset group ran 1.02-1.03x faster than the
    # D=128 default at (1024, 16) and 0.92x at (512, 32); at D=64 0.95x at (512, 32), 0.98-1.06x at (1024, 16)
    64: [("opaque slots", _opaque_slots(64)),
         ("four slots, one tile per step (v13)", _resident(NUM_BUF=4, maxnreg=128)),
         ("eight slots shared by two query groups", _resident(NUM_BUF=8, maxnreg=168, CONSUMERS=2,
                                                              CONSUMER_REGS=240, OPAQUE_SLOTS=True)),
         ("one offset group, paired", _beside_streamed_ring(64, _one_group(dict(_PK, PAIRED=True, NUM_BUF=5))))],
    128: [("constant slots", _opaque_slots(128, on=False)),
          ("query tiles (v14)", _beside_streamed_ring(128, _query_tiles)),
          ("one offset group, paired, two consumers",
           _beside_streamed_ring(128, _one_group(dict(_SHARED_RING, PAIRED=True), max_w2=32)))]}


def ab(rounds=3, rep=100, shapes=SHAPES + [(16384, 512, 32)]) -> None:
    """Per shape class and head dim: the default forward (simplicial_attention.gluon_fwd_config) and each of
    AB_ALTERNATIVES[d] that applies there, `rounds` alternating timings each, against SDPA (torch's default
    dispatch)."""
    print("| N | w1 | w2 | D | alternative | SDPA TF/s | default ms (rounds) | alternative ms (rounds) | "
          "default / SDPA | alternative / SDPA | speed-up of the default |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for d in (64, 128):
        for n, w1, w2 in shapes:
            alts = {name: cfg for name, pick in AB_ALTERNATIVES[d] if (cfg := pick(w1, w2)) is not None}
            if not alts:
                continue
            xs = inputs(n, 8, 8, d, requires_grad=False)
            fl = 4 * 4 * 8 * d * valid_triples(n, w1, w2)
            n_eq = sdpa_equal_length(n, w1, w2)
            s_tf = sdpa_flops(n_eq, d) / sdpa(n_eq, d, rep, "default")[0] / 1e9
            configs = {"default": sa.gluon_fwd_config(d, w1), **alts}
            times = {k: [] for k in configs}
            for _ in range(rounds):
                for key, cfg in configs.items():
                    times[key].append(triton.testing.do_bench(lambda: gluon_forward(*xs, w1, w2, 0.125, **cfg),
                                                              warmup=10, rep=rep, return_mode="median"))
            mid = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
            ratio = {k: fl / mid[k] / 1e9 / s_tf for k in mid}
            for name in alts:
                print(f"| {n} | {w1} | {w2} | {d} | {name} | {s_tf:.0f} | "
                      f"{' / '.join(f'{t:.3f}' for t in times['default'])} | "
                      f"{' / '.join(f'{t:.3f}' for t in times[name])} | {ratio['default']:.3f} | {ratio[name]:.3f} | "
                      f"{mid[name] / mid['default']:.3f} |", flush=True)
    print("(median of the rounds in the ratios)")


_G = dict(BLOCK_M=64, V2_BUF=1, num_warps=4, maxnreg=128)
_G3 = dict(_G, maxnreg=80)  # three programs per SM (the consumer gets 136 registers); D=64 only, D=128 cannot fit
_G2 = dict(_G, maxnreg=168, CONSUMERS=2, CONSUMER_REGS=240)  # one program per SM, two consumers of 240 registers
_GP = dict(_G, PAIRED=True)  # two K1 tiles per softmax step (one consumer; two programs per SM)
CONFIGS = {64: [dict(BLOCK_N=64, NUM_BUF=2, **_G), dict(BLOCK_N=128, NUM_BUF=2, **_G),
                dict(BLOCK_N=64, NUM_BUF=2, **_G3), dict(BLOCK_N=64, NUM_BUF=3, **_G3),
                dict(BLOCK_N=64, NUM_BUF=4, **_GP), dict(BLOCK_N=64, NUM_BUF=5, **_GP),
                dict(NUM_BUF=5, PAIRED=True, **_PK), dict(NUM_BUF=4, PAIRED=True, **_PK),
                # the k1 window resident: two slots, three programs per SM (w1 <= 128); four slots (w1 <= 265); eight
                # slots shared by two query groups, one consumer each (w1 <= 513)
                dict(NUM_BUF=2, RESIDENT=True, **dict(_PK, maxnreg=80)), dict(NUM_BUF=4, RESIDENT=True, **_PK),
                dict(NUM_BUF=8, RESIDENT=True, CONSUMERS=2, CONSUMER_REGS=240, **dict(_PK, maxnreg=168)),
                # ... with opaque slot indices (OPAQUE_SLOTS), and paired steps (four slots, opaque: the default at
                # 129 <= w1 <= 265 since v14; eight, two consumers, constant slots: w1 <= 513)
                dict(NUM_BUF=2, RESIDENT=True, OPAQUE_SLOTS=True, **dict(_PK, maxnreg=80)),
                dict(NUM_BUF=4, RESIDENT=True, PAIRED=True, OPAQUE_SLOTS=True, **_PK),
                dict(NUM_BUF=8, RESIDENT=True, PAIRED=True, CONSUMERS=2, CONSUMER_REGS=240,
                     **dict(_PK, maxnreg=168)),
                # one offset group (ONE_GROUP), paired, streamed: 2 queries x 32 offsets, 4 x 16, 1 x 64
                *(dict(_PK, QUERIES=q, ONE_GROUP=True, PAIRED=True, NUM_BUF=5) for q in (2, 4, 1))],
           128: [dict(BLOCK_N=64, NUM_BUF=2, **_G), dict(BLOCK_N=128, NUM_BUF=2, **_G),
                 dict(BLOCK_N=32, NUM_BUF=3, **_G),
                 # two consumer warpgroups per program sharing the K1/V1 ring (one program per SM)
                 dict(BLOCK_N=64, NUM_BUF=3, **_G2), dict(BLOCK_N=128, NUM_BUF=2, **_G2),
                 dict(NUM_BUF=2, **_PK),  # packed rows, one K1 tile per step
                 dict(NUM_BUF=2, RESIDENT=True, **_PK),  # ... with the query group's k1 window loaded once (w1<=128)
                 dict(NUM_BUF=4, RESIDENT=True, **dict(_PK, maxnreg=168)),  # ... in four slots (w1 <= 256)
                 # ... shared by two query groups, one consumer warpgroup each (one program per SM)
                 dict(NUM_BUF=4, RESIDENT=True, CONSUMERS=2, CONSUMER_REGS=240, **dict(_PK, maxnreg=168)),
                 # ... with opaque slot indices (OPAQUE_SLOTS): the two resident defaults since v14
                 dict(NUM_BUF=2, RESIDENT=True, OPAQUE_SLOTS=True, **_PK),
                 dict(NUM_BUF=4, RESIDENT=True, OPAQUE_SLOTS=True, CONSUMERS=2, CONSUMER_REGS=240,
                      **dict(_PK, maxnreg=168)),
                 # two query groups on one streamed ring (_SHARED_RING, the default at w1 >= 258), rings of three and
                 # four tiles, and 4 queries x 16 offsets
                 dict(_SHARED_RING, NUM_BUF=3), _SHARED_RING, dict(_SHARED_RING, QUERIES=4),
                 # one offset group (ONE_GROUP): 2 queries x 32 offsets, 4 x 16, 1 x 64 (where w2 fits)
                 *(dict(_SHARED_RING, QUERIES=q, ONE_GROUP=True, PAIRED=True) for q in (2, 4, 1))]}


_S = dict(BLOCK_N=64, num_warps=4, maxnreg=128)  # two K1 tiles of 64 per program, one program per SM
_R1 = dict(ROLES=2, CONSUMER_REGS=232, PRODUCER_REGS=24, num_warps=4, maxnreg=128)  # the two-role dK1/dV1 kernel
DK1_CONFIGS = {64: [dict(BLOCK_M=64, NUM_F=4, CONSUMER_REGS=232, PRODUCER_REGS=24, **_S),
                    dict(BLOCK_M=64, NUM_F=2, CONSUMER_REGS=232, PRODUCER_REGS=24, **_S),
                    dict(BLOCK_M=64, BLOCK_N=64, NUM_F=4, NUM_P=2, **_R1)],
               128: [dict(BLOCK_M=32, NUM_F=4, CONSUMER_REGS=232, PRODUCER_REGS=24, **_S),
                     dict(BLOCK_M=64, BLOCK_N=64, NUM_F=2, NUM_P=2, **_R1),
                     dict(BLOCK_M=64, BLOCK_N=64, NUM_F=3, NUM_P=2, Y_BUF=1, **_R1),
                     dict(BLOCK_M=64, BLOCK_N=64, NUM_F=2, NUM_P=2, Y_BUF=1, **_R1)]}


def dk1_gluon(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg):
    """((dk1, dv1), [compiled kernel]) of the Gluon dK1/dV1 kernel with launch config cfg."""
    n = q.shape[1]
    dk1, dv1 = torch.empty_like(k1), torch.empty_like(v1)
    kernel = gluon_kernels.backward_dk1dv1(do, q, k1, k2, v1, v2, lse, delta, min(w1, n), min(w2, n),
                                           sm_scale * sa._LOG2E, dk1, dv1, cfg)
    return (dk1, dv1), [kernel]


_R2 = dict(ROLES=2, CONSUMER_REGS=240, PRODUCER_REGS=24, num_warps=4, maxnreg=168)  # the two-role dQ kernel
DQ_CONFIGS = {64: [dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=2, num_warps=4, maxnreg=128),
                   dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=2, num_warps=4, maxnreg=128, DQ_ATOMIC=True),
                   dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=6, NUM_P=3, **_R2)],
              128: [dict(BLOCK_M=64, BLOCK_N=32, NUM_BUF=2, num_warps=4, maxnreg=128, SPLIT=True, DQ_ATOMIC=True),
                    dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=4, NUM_P=2, **_R2),
                    dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=4, NUM_P=3, **_R2),
                    dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=4, NUM_P=2, DQ_ATOMIC=True, **_R2)]}


def dq_gluon(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg):
    """((dq, dk2, dv2), [compiled kernels]) of the Gluon dQ/dK2/dV2 kernel with launch config cfg."""
    n = q.shape[1]
    dq = torch.zeros(q.shape, device=q.device, dtype=torch.float32) if cfg.get("DQ_ATOMIC") else torch.empty_like(q)
    dk2 = torch.zeros(k1.shape, device=q.device, dtype=torch.float32)
    dv2 = torch.zeros(k1.shape, device=q.device, dtype=torch.float32)
    kernels = gluon_kernels.backward_dq_dk2dv2(do, q, k1, k2, v1, v2, lse, delta, min(w1, n), min(w2, n), sm_scale,
                                           dq, dk2, dv2, cfg)
    return (dq.to(q.dtype), dk2.to(q.dtype), dv2.to(q.dtype)), kernels


# kind: (tl launcher in simplicial_attention, Gluon launcher above, its configs per head dim, output names)
BACKWARD = {"bwd_dk1": ("_backward_dk1dv1", dk1_gluon, DK1_CONFIGS, ("dk1", "dv1")),
            "bwd_dq": ("_backward_dq_dk2dv2", dq_gluon, DQ_CONFIGS, ("dq", "dk2", "dv2"))}


def check_and_bench_backward(kind, rep=50, repeat=3) -> bool:
    """A Gluon backward kernel against its tl one (same lse / delta), CHECK_SHAPES and D=128 at the target, each config
    `repeat` launches; timed where N=8192."""
    launcher, gluon_run, configs, names = BACKWARD[kind]
    ok = True
    for shape in CHECK_SHAPES + [(4, 8192, 8, 8, 128, 512, 32)]:
        b, n, hq, hkv, d, w1, w2 = shape
        q, ks, do = random_case(b, n, hq, hkv, d)
        scale = 1 / math.sqrt(d)
        out, lse = sa._forward(q, *ks, min(w1, n), min(w2, n), scale)
        delta = sa._backward_delta(do, out)
        sa.CONFIG_OVERRIDE[kind] = {"GLUON": False}  # the reference and the baseline: the tl kernel
        tl_run = getattr(sa, launcher)
        ref = tl_run(do, q, *ks, lse, delta, min(w1, n), min(w2, n), scale)
        for cfg in configs[d]:
            errs, finite = [0.0] * len(names), True
            for _ in range(repeat):
                outs, kernels = gluon_run(do, q, *ks, lse, delta, w1, w2, scale, cfg)
                for i, (a, r) in enumerate(zip(outs, ref)):
                    errs[i] = max(errs[i], rel_err(a, r))
                    finite &= torch.isfinite(a).all().item()
            good = max(errs) < 1e-2 and finite
            ok &= good
            print(f"check {kind} {shape} {cfg}: max over {repeat}: "
                  + ", ".join(f"{nm} rel err {e:.2e}" for nm, e in zip(names, errs)) + f" {'ok' if good else 'FAIL'}",
                  flush=True)
            if n == 8192:
                fl = 4 * b * hq * d * valid_triples(n, w1, w2)
                t_tl = triton.testing.do_bench(lambda: tl_run(do, q, *ks, lse, delta, w1, w2, scale), warmup=10,
                                               rep=rep, return_mode="median")
                t_g = triton.testing.do_bench(lambda: gluon_run(do, q, *ks, lse, delta, w1, w2, scale, cfg),
                                              warmup=10, rep=rep, return_mode="median")
                info = " / ".join(f"{k.n_regs} regs {k.n_spills} spills" for k in kernels)
                print(f"| {kind} D={d} | tl default | {t_tl:.3f} ms | {1.25 * fl / t_tl / 1e9:.0f} TF/s |\n"
                      f"| {kind} D={d} | Gluon {cfg} | {t_g:.3f} ms | {1.25 * fl / t_g / 1e9:.0f} TF/s | {info} "
                      f"| {t_tl / t_g:.2f}x |", flush=True)
        sa.CONFIG_OVERRIDE.clear()
    return ok


def stress(launches=40, windows=((512, 32), (256, 64), (128, 128))) -> bool:
    """The package's forward (Gluon on Hopper) launched many times on the GPU test's largest shape, in fp16 and bf16,
    at each of `windows`: every launch must give the first one's bits (a launch that differs, and where (batch, row,
    head), shows a race), and the first must be as accurate as the tl forward (check()'s bound; at D=64 the packed
    rows sum in another order)."""
    ok = True
    cases = [(w, d, dt) for w in windows for d in (64, 128) for dt in (torch.float16, torch.bfloat16)]
    for (w1, w2), d, dtype in cases:
        q, k1, k2, v1, v2 = make_inputs(1, 4096, 4, 1, d, dtype, "cuda", seed=3)
        ref, ref_lse, exact = tl_references(q, [k1, k2, v1, v2], w1, w2, d ** -0.5,
                                            {"GLUON": False, "PER_QUERY": False})
        first, first_lse = sa._forward(q, k1, k2, v1, v2, w1, w2, d ** -0.5)
        err, ref_err = rel_err(first, exact), rel_err(ref, exact)
        lse_err = (first_lse - ref_lse).abs().max().item()
        bad = 0
        for i in range(launches):
            out, lse = sa._forward(q, k1, k2, v1, v2, w1, w2, d ** -0.5)
            diff = (out.float() - first.float()).abs().amax(dim=-1)  # [B, N, H]
            if diff.max().item() > 0 or not torch.equal(lse, first_lse):
                bad += 1
                rows = diff.nonzero()
                print(f"{str(dtype)[6:]} launch {i}: max abs diff {diff.max().item():.3e} at {rows.shape[0]} rows, "
                      f"first {rows[:4].tolist()} last {rows[-2:].tolist()}; lse diff "
                      f"{(lse - first_lse).abs().max().item():.2e}", flush=True)
        close = as_accurate(err, ref_err) and lse_err < 1e-3
        print(f"# stress ({w1}, {w2}) D={d} {str(dtype)[6:]} ({sa.LAUNCHED['fwd'].name}): {bad} of {launches} launches "
              f"differ from the first; the first's rel err vs fp32 {err:.2e} (tl {ref_err:.2e}), lse max abs err vs tl "
              f"{lse_err:.2e} {'ok' if close else 'FAIL'}", flush=True)
        ok &= bad == 0 and close
    return ok & stress_dk1(launches)


def stress_dk1(launches=40) -> bool:
    """The package's dK1/dV1 kernels (Gluon on Hopper: at D=64 two consumers share each formed operand, at D=128 two
    consumers of different roles hand P over) launched many times: they sum without atomics, so every launch must
    give the first one's bits; a launch that differs shows a race."""
    ok = True
    for d, dtype in ((d, dtype) for d in (64, 128) for dtype in (torch.float16, torch.bfloat16)):
        q, k1, k2, v1, v2 = make_inputs(1, 4096, 4, 1, d, dtype, "cuda", seed=3)
        do = torch.randn_like(q)
        out, lse = sa._forward(q, k1, k2, v1, v2, 512, 32, 0.125)
        delta = sa._backward_delta(do, out)
        first = sa._backward_dk1dv1(do, q, k1, k2, v1, v2, lse, delta, 512, 32, 0.125)
        bad = sum(any(not torch.equal(a, f) for a, f in
                      zip(sa._backward_dk1dv1(do, q, k1, k2, v1, v2, lse, delta, 512, 32, 0.125), first))
                  for _ in range(launches))
        print(f"# stress dk1 D={d} {str(dtype)[6:]} ({sa.LAUNCHED['bwd_dk1'].name}): {bad} of {launches} launches "
              f"differ from the first", flush=True)
        ok &= bad == 0
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only the correctness check")
    ap.add_argument("--dk1", action="store_true", help="the dK1/dV1 backward kernel instead of the forward")
    ap.add_argument("--dq", action="store_true", help="the dQ/dK2/dV2 backward kernel instead of the forward")
    ap.add_argument("--stress", action="store_true",
                    help="repeat the forward and the dK1/dV1 kernel on one shape, report differing launches")
    ap.add_argument("--ab", action="store_true",
                    help="the default forward against AB_ALTERNATIVES in alternating rounds, per shape class")
    ap.add_argument("--rep", type=int, default=50)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gluon_kernels.py needs a CUDA GPU (registers without one: benchmarks/compile_report.py)")
        return 1
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} | {torch.cuda.get_device_name()} | "
          f"torch {torch.__version__} | triton {triton.__version__} | command: python benchmarks/gluon_kernels.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}", flush=True)
    if args.ab:
        ab(rep=args.rep)
        return 0
    ok = stress() if args.stress else True
    for kind, wanted in (("bwd_dq", args.dq), ("bwd_dk1", args.dk1)):
        if wanted:
            ok &= check_and_bench_backward(kind, args.rep)
    if args.stress or args.dq or args.dk1:
        return 0 if ok else 1
    ok = check(CONFIGS)
    print(f"# check: {'all outputs match' if ok else 'MISMATCH (timings below are of a wrong kernel)'}")
    if not args.check:
        bench(CONFIGS, args.rep)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
