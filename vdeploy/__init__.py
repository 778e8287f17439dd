"""vdeploy: deploy DeepSeek models on a bundled paged-attention engine.

Heavy parts (torch, the engine) are imported lazily so that `import vdeploy` and the CLI stay instant.
"""

__version__ = "0.1.0"

__all__ = ["LLM", "LoRARequest", "SamplingParams", "__version__"]


def __getattr__(name: str):
    if name == "LLM":
        from vdeploy.engine.llm import LLM

        return LLM
    if name == "SamplingParams":
        from vdeploy.engine.sampling_params import SamplingParams

        return SamplingParams
    if name == "LoRARequest":
        from vdeploy.lora.request import LoRARequest

        return LoRARequest
    raise AttributeError(name)
