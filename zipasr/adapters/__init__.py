"""The encoder-side adapter family and the LLM-side plain LoRA (paper Sec. III-B, IV).

`ADAPTERS` maps a method name (the YAML value of `encoder_adapter.method`) to its layer class.
"""
from zipasr.adapters.base import AdapterLayer, LangState
from zipasr.adapters.flylora import FlyLoRA
from zipasr.adapters.independent import IndependentLoRA
from zipasr.adapters.lora import VanillaLoRA
from zipasr.adapters.router import LanguageRouter
from zipasr.adapters.zipper import ZipperHard, ZipperSoft, ZipperStatic

ADAPTERS: dict[str, type[AdapterLayer]] = {
    cls.method: cls for cls in (VanillaLoRA, IndependentLoRA, FlyLoRA, ZipperStatic, ZipperHard, ZipperSoft)
}

# inject imports ADAPTERS from this package, so it comes after the registry.
from zipasr.adapters.inject import (  # noqa: E402
    adapter_layers,
    adapter_state_dict,
    format_parameter_table,
    init_b_from_checkpoint,
    inject_adapters,
    inject_from_checkpoint,
    load_adapter_config,
    load_adapter_kwargs,
    load_adapter_weights,
    load_adapters,
    merge_adapters,
    merged_adapters,
    read_safetensors,
    save_adapters,
    trainable_parameter_table,
    unmerge_adapters,
)

__all__ = [
    "ADAPTERS", "AdapterLayer", "LangState", "LanguageRouter", "VanillaLoRA", "IndependentLoRA", "FlyLoRA",
    "ZipperStatic", "ZipperHard", "ZipperSoft", "adapter_layers", "adapter_state_dict", "inject_adapters",
    "inject_from_checkpoint", "save_adapters", "load_adapters", "load_adapter_config", "load_adapter_kwargs",
    "load_adapter_weights", "read_safetensors",
    "init_b_from_checkpoint", "merge_adapters", "unmerge_adapters", "merged_adapters",
    "trainable_parameter_table", "format_parameter_table",
]
