"""Short throughput probe of the model's training step (bf16 autocast, fused AdamW), random byte tokens."""
import os, sys, time, torch
sys.path.insert(0, os.getcwd())
from simplicial.model import LM, ModelConfig
from simplicial.counting import flops_per_token, param_counts
OUT = os.environ.get("OUT", "/tmp/out"); f = open(f"{OUT}/bench.txt", "w")
def p(s): print(s, flush=True); f.write(s + "\n"); f.flush()
T = 1024
shapes = [(4,64,1,16),(4,128,2,16),(8,512,8,32),(4,256,4,16),(8,384,6,32)]
for L, d, H, MB in shapes:
    for arch in ("dot", "simplicial"):
        cfg = ModelConfig(vocab_size=256, seq_len=T, n_layers=L, d_model=d, n_heads=H, arch=arch, w1=512, w2=32)
        m = LM(cfg).cuda(); opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused=True)
        x = torch.randint(0, 256, (MB, T), device="cuda")
        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                _, loss = m(x, x)
            loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        t0 = time.time(); step(); torch.cuda.synchronize(); first = time.time() - t0
        for _ in range(2): step()
        torch.cuda.synchronize(); t0 = time.time(); n = 8
        for _ in range(n): step()
        torch.cuda.synchronize(); dt = (time.time() - t0) / n
        tok = MB * T / dt; fl = flops_per_token(cfg)["train"] * tok
        p(f"{arch:10s} L{L} d{d} H{H} N={param_counts(cfg)['params_non_embedding']/1e6:.2f}M mb={MB}x{T}: "
          f"{tok/1e3:.0f}k tok/s, {fl/1e12:.0f} TFLOP/s (model count), first step {first:.1f}s")
        del m, opt
