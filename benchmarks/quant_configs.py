"""Config-only model directories of the R1 distills with each quantization scheme, for engine benchmarks with
`--load-format dummy` (random weights at the quantized shapes: the same bytes and kernels as a real checkpoint).

    python benchmarks/quant_configs.py /tmp/quant-models --models deepseek-r1-distill-qwen-7b --schemes bf16 awq
    python -m vdeploy bench /tmp/quant-models/deepseek-r1-distill-qwen-7b-awq --load-format dummy ...

Writes <out>/<model>-<scheme>/config.json from the bundled config (vdeploy/model_configs) plus the scheme's
quantization_config (the published formats: AutoAWQ GEMM, AutoGPTQ, llm-compressor W8A8 dynamic).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vdeploy.checkpoint.synthetic import REFERENCE_CONFIGS


def _w8a8(kind: str) -> dict:
    args = {"num_bits": 8, "type": kind, "symmetric": True}
    return {"quant_method": "compressed-tensors", "format": f"{kind}-quantized", "ignore": ["lm_head"],
            "config_groups": {"group_0": {"targets": ["Linear"],
                                          "weights": {**args, "strategy": "channel", "dynamic": False},
                                          "input_activations": {**args, "strategy": "token", "dynamic": True}}}}


SCHEMES = {
    "bf16": None,
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
    "gptq": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True,
             "checkpoint_format": "gptq"},
    "int8": _w8a8("int"),
    "fp8": _w8a8("float"),
}


def write(out: Path, model: str, scheme: str) -> Path:
    config = json.loads((REFERENCE_CONFIGS / f"{model}.config.json").read_text())
    config["torch_dtype"] = "bfloat16"
    if SCHEMES[scheme] is not None:
        config["quantization_config"] = SCHEMES[scheme]
    path = out / f"{model}-{scheme}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=1))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", nargs="+", default=["deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-32b"])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    args = parser.parse_args(argv)
    for model in args.models:
        for scheme in args.schemes:
            print(write(args.out, model, scheme))


if __name__ == "__main__":
    main()
