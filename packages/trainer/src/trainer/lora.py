"""LoRA with DeepSpeed-Chat's flags (--lora_dim, --lora_module_name, --only_optimize_lora,
--lora_learning_rate), built with peft.

peft injects its LoRA layers in place (`inject_adapter_in_model`), so the model keeps its class, its
forward and its parameter names apart from the LoRA layers' own. What follows DeepSpeed-Chat's
`convert_linear_layer_to_lora`:
- LoRA goes on every linear layer (GPT-2's Conv1D included) whose name contains `module_name`;
- the update is scaled by 1/dim (lora_alpha 1), A is Kaiming-uniform and B zero, so training starts
  from the model itself;
- those layers' weights are frozen; the rest trains unless `only_optimize`, which leaves the LoRA
  weights alone trainable (and the reward head, which DeepSpeed-Chat's step 2 also keeps);
- a layer whose weight is tied to another module's (an LM head tied to the embeddings) is refused:
  its merged update would change the other module too.
Checkpoints are plain Hugging Face models: `merge` folds the LoRA update into each weight (peft's own
merge) and takes the LoRA layers out before saving.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LoraSpec:
    dim: int  # LoRA rank; 0: no LoRA
    module_name: str  # LoRA on every linear layer whose name contains this
    only_optimize: bool  # train the LoRA weights alone (and a reward model's head)
    learning_rate: float  # the LoRA weights' peak learning rate


def is_lora(name: str) -> bool:
    """Whether a parameter name is a LoRA weight (peft's lora_A / lora_B)."""
    return ".lora_A." in name or ".lora_B." in name


# What trains beside the LoRA weights under `only_optimize`: the reward model's and critic's value head.
HEADS = ("v_head.",)


def add(model: nn.Module, spec: LoraSpec) -> nn.Module:
    """`model` with LoRA layers (in place). A `module_name` that matches no linear layer, or a layer
    whose weight is tied to another module's, is refused with one line."""
    if spec.dim <= 0:
        return model
    from peft import LoraConfig, inject_adapter_in_model
    from transformers.pytorch_utils import Conv1D

    linear = {name: module for name, module in model.named_modules() if isinstance(module, (nn.Linear, Conv1D))}
    targets = [name for name in linear if spec.module_name in name]
    if not targets:
        raise SystemExit(f"trainer: --lora_module_name {spec.module_name!r} matches none of the model's linear layers, which are "
                         f"{', '.join(_patterns(linear))}; give a part of one of these names")
    conv1d = [isinstance(linear[name], Conv1D) for name in targets]
    if any(conv1d) and not all(conv1d):
        raise SystemExit(f"trainer: --lora_module_name {spec.module_name!r} matches both Linear and Conv1D layers; peft needs one "
                         "kind per model, so name a part of the model that has one kind")
    _refuse_tied(model, targets, spec.module_name)
    # Exact names: peft matches a target against the end of each module's name.
    config = LoraConfig(r=spec.dim, lora_alpha=1, target_modules=targets, fan_in_fan_out=all(conv1d), lora_dropout=0.0)
    model = inject_adapter_in_model(config, model)
    _set_trainable(model, spec)
    if spec.only_optimize:
        # Reentrant gradient checkpointing needs an input that requires grad; frozen embeddings give none.
        getattr(model, "backbone", model).enable_input_require_grads()
    return model


def _refuse_tied(model: nn.Module, targets: list[str], module_name: str) -> None:
    """A LoRA layer's weight must be its own. One tied to another module's (an LM head tied to the input
    embeddings) would go on training through that module, and the merge would add the LoRA update to
    the shared tensor, changing the other module too: the merged model would not be the trained one."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    for target in targets:
        others = [n for n in names[id(model.get_submodule(target).weight)] if n != f"{target}.weight"]
        if others:
            raise SystemExit(f"trainer: --lora_module_name {module_name!r} puts LoRA on {target}, whose weight is tied to "
                             f"{others[0]}, so the merged update would change that too; give a name that leaves {target} out "
                             "(e.g. the transformer blocks), or untie the weights first (an LM head: tie_word_embeddings false "
                             "in the model's config)")


def _set_trainable(model: nn.Module, spec: LoraSpec) -> None:
    """What trains: the LoRA weights, and the rest unless `only_optimize` (then only a value head). Every
    LoRA layer's base weight is frozen through its module: `named_parameters` lists a shared tensor once,
    under whichever name comes first, so freezing by name can miss one."""
    from peft.tuners.lora import LoraLayer

    model.requires_grad_(not spec.only_optimize)
    if spec.only_optimize:
        for name, param in model.named_parameters():
            if is_lora(name) or name.startswith(HEADS):
                param.requires_grad_(True)
    for layer in model.modules():
        if isinstance(layer, LoraLayer):
            layer.get_base_layer().weight.requires_grad_(False)


def has_lora(model: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


@torch.no_grad()
def merge(model: nn.Module) -> nn.Module:
    """`model` (in place) with every LoRA layer folded into its base weight and replaced by it: a
    plain model again. Under ZeRO-3 each layer's weights are gathered in turn, merged on rank 0 and
    partitioned again, so no rank holds more than one whole layer beside its slices; every rank must
    call this."""
    from peft.tuners.lora import LoraLayer

    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, layer in layers:
        with _gathered([p for p in layer.parameters() if hasattr(p, "ds_id")]):
            layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.get_base_layer())
    return model


@torch.no_grad()
def partitioned_like(model: nn.Module, source: nn.Module, ds_config: dict) -> nn.Module:
    """`model`, built partitioned under ZeRO-3 (phase 3's EMA of the actor), with its LoRA weights set
    to `source`'s and then partitioned too: peft adds them as whole tensors after the model was built,
    and only a DeepSpeed engine would partition them later."""
    if not has_lora(model):
        return model
    import deepspeed

    theirs = {name: p for name, p in source.named_parameters() if is_lora(name)}
    for name, param in model.named_parameters():
        if is_lora(name):
            param.copy_(theirs[name])
    deepspeed.zero.Init(module=model, config_dict_or_path=ds_config, mem_efficient_linear=False)
    return model


def trainable_summary(model: nn.Module) -> str:
    """'trainable parameters: N of M (P%)', counting whole parameters even under ZeRO-3."""
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]
    total = sum(n for n, _ in sizes)
    trained = sum(n for n, grad in sizes if grad)
    return f"trainable parameters: {trained:,} of {total:,} ({100 * trained / max(total, 1):.2f}%)"


def _gathered(params: list[nn.Parameter]):
    """ZeRO-3 parameters gathered whole on every rank, rank 0's changes partitioned again on exit."""
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


def _patterns(linear: dict) -> list[str]:
    """Layer names with their block numbers folded (`model.decoder.layers.N.fc1`), in model order."""
    return list(dict.fromkeys(re.sub(r"\.\d+(?=\.|$)", ".N", name) for name in linear))
