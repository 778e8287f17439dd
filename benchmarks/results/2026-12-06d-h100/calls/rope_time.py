import torch, sys
sys.path.insert(0, ".")
from vdeploy.bench.hardware import median_call_ms
from vdeploy.layers.rotary import compute_cos_sin_cache
from vdeploy_kernels.mla_rope_cache import mla_rope_and_cache
for t, h in [(8192, 128), (8192, 16), (256, 128), (1, 128)]:
    cos_sin = compute_cos_sin_cache(64, 8192, 10000.0, None, torch.device("cuda"))
    q = torch.randn(t, h, 192, device="cuda", dtype=torch.bfloat16)
    latent = torch.randn(t, 576, device="cuda", dtype=torch.bfloat16)
    w = torch.ones(512, device="cuda", dtype=torch.bfloat16)
    pos = torch.randint(0, 8192, (t,), device="cuda")
    cache = torch.zeros(1, t // 64 + 2, 64, 1, 576, device="cuda", dtype=torch.bfloat16)
    slots = torch.arange(t, device="cuda")
    ms = median_call_ms(lambda: mla_rope_and_cache(q[..., 128:], latent, pos, cos_sin, w, 1e-6, cache, slots), torch.device("cuda"), 20)
    gb = t * (h * 64 * 2 * 2 + 576 * 2 * 2) / 1e9
    print(f"T={t} H={h}: {ms*1000:.1f} us, {gb/ms*1e3:.0f} GB/s")
