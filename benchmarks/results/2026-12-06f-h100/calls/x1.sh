# call 1 on whichever GPU came: c1.sh on an H200, h1.sh elsewhere (same carry)
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then bash benchmarks/results/2026-12-06f-h100/calls/c1.sh; else bash benchmarks/results/2026-12-06f-h100/calls/h1.sh; fi
