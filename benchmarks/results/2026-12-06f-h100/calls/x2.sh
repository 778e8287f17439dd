# call 2 on whichever GPU came: c2.sh on an H200, h2.sh elsewhere (same carry)
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then bash benchmarks/results/2026-12-06f-h100/calls/c2.sh; else bash benchmarks/results/2026-12-06f-h100/calls/h2.sh; fi
