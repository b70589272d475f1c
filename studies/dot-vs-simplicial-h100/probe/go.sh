export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 studies/dot-vs-simplicial-h100/probe/probe.py > /dev/null
grep -v "^py " $OUT/facts.txt
grep "^py " $OUT/facts.txt | head -25
echo "== study on this machine (no training)"
timeout 50 python3 studies/dot-vs-simplicial-h100/probe/pre.py 2>&1 | tail -8 | tee $OUT/study_check.txt
echo "== trainer-step throughput probe (not a study run)"
timeout 40 python3 studies/dot-vs-simplicial-h100/probe/bench.py 2>&1 | grep -v Warning | tail -12
