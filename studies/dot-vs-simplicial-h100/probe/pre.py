import sys, time, importlib.util
sys.path.insert(0, ".")
sp = importlib.util.spec_from_file_location("study_sitting", "scripts/study_sitting.py")
m = importlib.util.module_from_spec(sp); sys.modules["study_sitting"] = m; sp.loader.exec_module(m)
t = time.time()
spec, runs = m._load(m.Path("studies/dot-vs-simplicial-h100/study.yaml"))
print(f"study loaded in {time.time() - t:.1f} s: {len(runs)} runs", flush=True)
for line in m.preflight(runs):
    print(line, flush=True)
