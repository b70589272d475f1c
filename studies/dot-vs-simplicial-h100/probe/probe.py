"""GPU machine probe for the study (studies/dot-vs-simplicial-h100/machine.md): installed packages' Python source sizes, versions, GPU, CPU, disk; then a short
trainer-step throughput probe (not a study run)."""
import importlib.metadata as md, importlib.util, json, os, site, subprocess, sys, sysconfig, time
OUT = os.environ.get("OUT", "/tmp/out"); os.makedirs(OUT, exist_ok=True)
log = open(f"{OUT}/facts.txt", "w")
def p(*a):
    s = " ".join(str(x) for x in a); print(s, flush=True); log.write(s + "\n"); log.flush()
def sh(c): return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
p("python", sys.version.split()[0], sys.executable)
for dist in ["torch","triton","jax","jaxlib","transformers","numpy","scipy","pandas","matplotlib","submitit","PyYAML",
             "tokenizers","pytest","pytest-timeout","pypdfium2","cloudpickle","typing_extensions","threadpoolctl","tensorboard","wandb","sympy","networkx"]:
    try: p("pkg", dist, md.version(dist))
    except Exception: p("pkg", dist, "MISSING")
p("gpu", sh("nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader"))
p("nproc", os.cpu_count(), "| mem", sh("free -g | sed -n 2p"))
p("df\n" + sh("df -h / /tmp 2>/dev/null"))
p("stdlib", sysconfig.get_paths()["stdlib"])
dirs = sorted(set(site.getsitepackages() + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
rows = []
for d in dirs:
    if not os.path.isdir(d): continue
    for top in sorted(os.listdir(d)):
        full = os.path.join(d, top)
        if not os.path.isdir(full) or top.endswith((".dist-info", ".egg-info")) or top == "__pycache__": continue
        n = b = 0
        for r, _, fs in os.walk(full):
            for f in fs:
                if f.endswith(".py"):
                    n += 1; b += os.path.getsize(os.path.join(r, f))
        rows.append((b, n, top, d))
rows.sort(reverse=True)
p("site dirs", dirs, "| total .py MB", round(sum(r[0] for r in rows) / 1e6, 1), "| files", sum(r[1] for r in rows))
for b, n, top, d in rows[:60]: p(f"py {b/1e6:8.2f} MB {n:6d} files  {top}  ({d})")
json.dump([dict(mb=b/1e6, files=n, name=t, dir=d) for b, n, t, d in rows], open(f"{OUT}/site_py.json", "w"), indent=0)
import importlib.util as iu, re
mods = ["torch","transformers","jax","torchvision","torchaudio","torch_geometric","pytorch_lightning","lightning",
        "lightning_fabric","torchmetrics","accelerate","huggingface_hub","botorch","gpytorch","numpyro","onnxscript",
        "onnx","triton","sympy","networkx","scipy","pandas","numpy","sklearn","matplotlib","cupy","flax","optax",
        "sentence_transformers","jaxtyping","tokenizers","safetensors","timm","datasets","peft","diffusers",
        "asyncio","email","json","http","xml","unittest","logging","importlib","concurrent","urllib",
        "multiprocessing","collections","encodings","sqlite3","tomllib","zoneinfo"]
for m in mods:
    try: sp = iu.find_spec(m)
    except Exception as e: p("mod", m, "ERR", e); continue
    if sp is None: p("mod", m, "MISSING"); continue
    locs = list(sp.submodule_search_locations or [])
    n = b = tn = tb = ti = 0; kinds = set()
    for loc in locs:
        for r, _, fs in os.walk(loc):
            rel = os.path.relpath(r, loc).split(os.sep)
            for f in fs:
                if not f.endswith(".py"): continue
                sz = os.path.getsize(os.path.join(r, f)); n += 1; b += sz
                hit = [k for k in ("test", "tests", "testing") if k in rel]
                if f.startswith("test_"): hit.append("test_*.py")
                if f == "__init__.py": ti += 1
                if hit: tn += 1; tb += sz; kinds.update(hit)
    p(f"mod {m} {locs[:1]} py {n} files {b/1e6:.2f} MB; test-like {tn} files {tb/1e6:.2f} MB {sorted(kinds)}; __init__ {ti}")
p("stdlib dir", sysconfig.get_paths()["stdlib"])
log.close()
