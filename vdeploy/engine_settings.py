"""The one registry of engine settings. Each setting is named once here, and everything that spells it derives from
this table: the command-line options of serve / generate / bench (vdeploy.cli.engine_options), the `engine:`
section of the profile schema (vdeploy.profile_schema.EngineSettings), the VDEPLOY_<NAME> environment variables
and the precedence resolver (vdeploy.profiles), `--config FILE.yaml` (vdeploy.config_file), `--explain`, and the
warnings for options that do nothing on this device. Standard library only: the CLI imports it at startup."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vdeploy.dtypes import ACTIVATION, TABLE

DTYPE_CHOICES = ("auto", *(d.name for d in ACTIVATION))
# fp8 halves KV memory
KV_CACHE_DTYPE_CHOICES = (*DTYPE_CHOICES, *(spelling for d in TABLE if d.is_float8 for spelling in d.spellings))
_NO_GPU = "no GPU here: "
# vLLM's human_readable_int: lower-case suffixes are decimal, upper-case binary ("32k" = 32,000, "32K" = 32,768).
_SUFFIX = {"k": 10**3, "m": 10**6, "g": 10**9, "K": 2**10, "M": 2**20, "G": 2**30}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgKMG]?)\s*$")


@dataclass(frozen=True)
class Setting:
    name: str  # profile `engine:` key, flag-dict key, --config key, VDEPLOY_<NAME>
    path: str  # dotted EngineConfig field
    kind: type  # int, float, bool or str; tuple: LoRA's (name, path) pairs
    help: str = ""
    flags: tuple[str, ...] = ()  # command-line spellings, canonical first; () = no option (profile/env/file only)
    in_profile: bool = False  # a key of a profile's `engine:` section
    size: bool = False  # a token count that takes vLLM's suffixes (32k = 32,000, 32K = 32,768)
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    cpu_no_effect: str = ""  # why the setting does nothing on a host without a GPU ("" = it does something)
    power_of_two: bool = False
    secret: bool = False  # never shown (--explain prints whether it is set, not its value)

    @property
    def option(self) -> str:
        """How the setting is spelled on the command line (or, without a flag, in a --config file)."""
        return self.flags[0] if self.flags else "--" + self.name.replace("_", "-")

    @property
    def boolean_flags(self) -> str:
        """A boolean option's on/off pair as click spells it (--enforce-eager/--no-enforce-eager)."""
        return f"{self.option}/--no-{self.option[2:]}"


SETTINGS: tuple[Setting, ...] = (
    Setting("tensor_parallel_size", "parallel.tensor_parallel_size", int, "Tensor-parallel ranks (GPUs).",
            ("--tp", "--tensor-parallel-size"), in_profile=True, minimum=1),
    Setting("pipeline_parallel_size", "parallel.pipeline_parallel_size", int,
            "Pipeline stages (contiguous layer ranges).", ("--pp", "--pipeline-parallel-size"), in_profile=True,
            minimum=1),
    Setting("max_model_len", "scheduler.max_model_len", int, "Longest prompt + output, in tokens.",
            ("--max-model-len",), in_profile=True, size=True, minimum=1),
    Setting("gpu_memory_utilization", "cache.gpu_memory_utilization", float,
            "Fraction of each GPU's memory vdeploy may use.", ("--gpu-memory-utilization",), in_profile=True,
            minimum=0.05, maximum=1.0,
            cpu_no_effect=_NO_GPU + "the CPU KV cache has a fixed byte budget (cache.cpu_kv_cache_bytes)"),
    Setting("block_size", "cache.block_size", int, "KV-cache block size (tokens, a power of two).",
            ("--block-size",), in_profile=True, minimum=1, power_of_two=True),
    Setting("max_num_seqs", "scheduler.max_num_seqs", int, "Most requests in one batch.", ("--max-num-seqs",),
            in_profile=True, minimum=1),
    Setting("max_num_batched_tokens", "scheduler.max_num_batched_tokens", int, "Token budget of one engine step.",
            ("--max-num-batched-tokens",), in_profile=True, size=True, minimum=1),
    Setting("enable_prefix_caching", "cache.enable_prefix_caching", bool,
            "Reuse the KV blocks of a shared prompt prefix.", ("--enable-prefix-caching",), in_profile=True),
    Setting("enforce_eager", "enforce_eager", bool, "Disable CUDA graphs.", ("--enforce-eager",), in_profile=True,
            cpu_no_effect=_NO_GPU + "CUDA graphs are never captured on CPU"),
    Setting("dtype", "dtype", str, "Weights and activations: " + ", ".join(DTYPE_CHOICES) + ".", ("--dtype",),
            in_profile=True, choices=DTYPE_CHOICES),
    Setting("kv_cache_dtype", "cache.kv_cache_dtype", str,
            "KV cache: " + ", ".join(KV_CACHE_DTYPE_CHOICES) + " (auto: the model's dtype).", ("--kv-cache-dtype",),
            in_profile=True, choices=KV_CACHE_DTYPE_CHOICES),
    Setting("tokenizer", "tokenizer", str, "Tokenizer directory (default: the model's)."),
    Setting("device", "device", str, "auto, cuda or cpu.", ("--device",), choices=("auto", "cuda", "cpu")),
    Setting("load_format", "load_format", str, "safetensors, or dummy (random weights at the checkpoint's shapes).",
            ("--load-format",), choices=("safetensors", "dummy")),
    Setting("dummy_weights", "dummy_weights", str,
            "With --load-format dummy: normal (N(0, 0.02) weights, unit norms: realistic activations and balanced "
            "MoE routing) or uniform (every float tensor U(-1e-3, 1e-3), as vLLM's dummy loader draws it: the same "
            "workload as `vllm --load-format dummy`, in which DeepSeek models route every token to the same few "
            "experts).", ("--dummy-weights",), choices=("normal", "uniform")),
    Setting("seed", "seed", int, "Engine seed (sampling without a per-request seed)."),
    Setting("enable_chunked_prefill", "scheduler.enable_chunked_prefill", bool,
            "Split long prompts over several steps."),
    Setting("max_waiting", "scheduler.max_waiting", int, "Most queued requests; more get a 503.", minimum=1),
    Setting("async_scheduling", "scheduler.async_scheduling", bool,
            "Schedule the next step while the device runs this one (default on).", ("--async-scheduling",)),
    Setting("nnodes", "parallel.nnodes", int, "Nodes in a multi-node job; this one is node 0, the others run "
            "`vdeploy worker-host` (default: torchrun's environment, else 1).", ("--nnodes",), minimum=1),
    Setting("node_rank", "parallel.node_rank", int, "This node's rank; serve runs on node 0.", ("--node-rank",),
            minimum=0),
    Setting("master_addr", "parallel.master_addr", str, "Address of node 0 the other nodes reach (multi-node).",
            ("--master-addr",)),
    Setting("master_port", "parallel.master_port", int, "Rendezvous port on node 0 (multi-node).",
            ("--master-port",), minimum=1, maximum=65535),
    Setting("step_timeout_s", "parallel.step_timeout_s", float,
            "A step not finished after this many seconds names the stuck process and stops it: every rank with "
            "--tp/--pp > 1 (exit code 1), serve's engine-core process at --tp 1 (serve exits 1). 0: off. "
            "Default 120.", ("--step-timeout",), minimum=0.0),
    Setting("idle_timeout_s", "parallel.idle_timeout_s", float,
            "While idle: a rank stopped this many seconds fails the engine. 0: off. Default 30.", minimum=0.0),
    Setting("data_parallel_size", "parallel.data_parallel_size", int,
            "Engine replicas, each with --tp x --pp GPUs of its own.", ("--dp", "--data-parallel-size"), minimum=1),
    Setting("data_parallel_size_local", "parallel.data_parallel_size_local", int,
            "Replicas on this node when --nnodes > 1 (default: --data-parallel-size / --nnodes; with uneven "
            "shares give it on every node).", ("--data-parallel-size-local",), minimum=1),
    Setting("dp_listen_address", "parallel.dp_listen_address", str,
            "worker-host with --dp: the address of this node its replicas listen on for node 0 (default: this "
            "node's address on the route to --master-addr, never all interfaces).", ("--dp-listen-address",)),
    Setting("data_parallel_rpc_port", "parallel.data_parallel_rpc_port", int,
            "worker-host with --dp: replica i listens on this port + i (default: free ports, announced through "
            "the rendezvous store).", ("--data-parallel-rpc-port",), minimum=1, maximum=65535),
    Setting("dp_secret", "parallel.dp_secret", str,
            "Shared secret (16+ characters) that authenticates node 0 and the replicas of other nodes; the same "
            "on every node. Prefer VDEPLOY_DP_SECRET: options show in `ps`.", ("--dp-secret",), secret=True),
    Setting("enable_dp_attention", "parallel.enable_dp_attention", bool,
            "DeepSeek MLA: each tensor rank keeps its own requests' latent cache (data-parallel attention); the "
            "experts stay split across the ranks.", ("--enable-dp-attention",)),
    # speculative decoding (--speculative-config sets both): "ngram" (any model) | "mtp" (DeepSeek-V3/R1's MTP layer)
    Setting("speculative_method", "speculative.method", str, "Speculative decoding method (ngram, mtp).",
            in_profile=True, choices=("ngram", "mtp")),
    Setting("num_speculative_tokens", "speculative.num_speculative_tokens", int,
            "Tokens proposed per speculative step.", in_profile=True, minimum=1),
    Setting("prompt_lookup_min", "speculative.prompt_lookup_min", int,
            "n-gram speculation: the shortest suffix looked up in the request's tokens (default 1).", minimum=1),
    Setting("prompt_lookup_max", "speculative.prompt_lookup_max", int,
            "n-gram speculation: the longest suffix looked up, tried first (default 3).", minimum=1),
    # multi-LoRA (the flags live in vdeploy.cli.lora_options: --lora-modules takes name=path pairs)
    Setting("enable_lora", "lora.enable_lora", bool,
            "Reserve LoRA adapter slots (adapters may then also be loaded at runtime).", ("--enable-lora",)),
    Setting("max_loras", "lora.max_loras", int, "LoRA adapters resident at once (default 1).", ("--max-loras",),
            minimum=1),
    Setting("max_lora_rank", "lora.max_lora_rank", int, "Highest LoRA rank served (default 16); slots are this wide.",
            ("--max-lora-rank",), minimum=1),
    Setting("lora_modules", "lora.lora_modules", tuple,  # VDEPLOY_LORA_MODULES="name=path,name2=path2"
            "A PEFT LoRA adapter to load at start, as name=path (repeat the flag for more); requests choose it by "
            "name.", ("--lora-modules",)),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
ENV_PREFIX = "VDEPLOY_"


def env_var(name: str) -> str:
    """The environment variable of a setting: VDEPLOY_<NAME>."""
    return ENV_PREFIX + name.upper()


def setting(name: str) -> Setting:
    return BY_NAME[name]


def profile_settings() -> tuple[Setting, ...]:
    return tuple(s for s in SETTINGS if s.in_profile)


def by_spelling() -> dict[str, Setting]:
    """Every accepted key of a --config file: the setting name, and each option spelling without its dashes in
    both vLLM's (tensor-parallel-size) and Python's (tensor_parallel_size) form."""
    keys: dict[str, Setting] = {}
    for s in SETTINGS:
        for key in (s.name, *(f.lstrip("-") for f in s.flags), s.option.lstrip("-")):
            keys[key] = keys[key.replace("-", "_")] = s
    return keys


def parse_size(text: str | int) -> int:
    """'32k' -> 32000, '32K' -> 32768, '16384' -> 16384, '1.5k' -> 1500 (as vLLM parses --max-model-len);
    ValueError for anything else."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a token count (e.g. 4096, 32k = 32,000, 32K = 32,768)")
    number, suffix = match.groups()
    value = float(number) * _SUFFIX.get(suffix, 1)
    if value != int(value) or value < 1:
        raise ValueError(f"{text!r} is not a whole, positive number of tokens")
    return int(value)


def value_problem(s: Setting, value: object) -> str | None:
    """Why `value` is not allowed for `s` (its bounds, choices, power of two), or None. The profile schema, the
    resolved configuration and --config files all check values with this."""
    if value is None:
        return None
    if s.choices and value not in s.choices:
        noun = s.name.rsplit("_", 1)[-1]  # dtype, device, format, method
        return f"{s.name}: unknown {noun} {value!r} (not one of {', '.join(s.choices)})"
    if s.kind in (int, float) and not isinstance(value, bool) and isinstance(value, (int, float)):
        if value != value:  # NaN: every comparison with a bound is False, so it would pass them all
            return f"{s.name} {value!r} is not a number"
        if s.minimum is not None and value < s.minimum or s.maximum is not None and value > s.maximum:
            low = "" if s.minimum is None else f"{s.minimum:g}"
            high = "" if s.maximum is None else f"{s.maximum:g}"
            return f"{s.name} {value!r} is outside [{low}, {high}]"
        if s.power_of_two and (value < 1 or int(value) & (int(value) - 1)):
            return f"{s.name} {value!r} must be a power of two"
    return None


def no_effect_warnings(values: dict[str, object], *, cpu_only: bool) -> list[str]:
    """One line per setting given a value (not None, not False) that does nothing on this device."""
    if not cpu_only:
        return []
    return [f"{s.option} has no effect: {s.cpu_no_effect}" for s in SETTINGS
            if s.cpu_no_effect and values.get(s.name) not in (None, False)]
