"""The DeepSpeed config and the optimizer agree at every ZeRO stage, with and without --offload, and
flags that cannot work together are refused before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.flags import TrainFlags
from trainer.runtime import EngineSpec, adam_class, ds_config


@pytest.mark.parametrize("offload", [False, True])
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_offload_config_and_optimizer_agree(stage, offload):
    spec = EngineSpec(micro_batch=2, accumulation=1, zero_stage=stage, dtype="fp32", offload=offload)
    if offload and stage == 0:
        with pytest.raises(ValueError, match="ZeRO stage 0"):
            ds_config(spec, world=1)
        return
    zero = ds_config(spec, world=1)["zero_optimization"]
    cpu_adam = adam_class(spec).__name__ == "DeepSpeedCPUAdam"
    # CPU Adam steps parameters that ZeRO keeps on the CPU: the optimizer state is offloaded exactly when it is used.
    assert (zero.get("offload_optimizer") == {"device": "cpu"}) == cpu_adam == offload
    assert (zero.get("offload_param") == {"device": "cpu"}) == (offload and stage == 3)  # DeepSpeed-Chat's --offload
    if not offload:
        assert adam_class(spec) is torch.optim.AdamW


def test_offload_at_stage_0_is_a_flag_error():
    with pytest.raises(ValueError, match="--zero_stage"):
        TrainFlags(shards=Path("s"), output_dir=Path("o"), model_config=Path("c.json"), learning_rate=1e-3, offload=True, zero_stage=0)
    TrainFlags(shards=Path("s"), output_dir=Path("o"), model_config=Path("c.json"), learning_rate=1e-3, offload=True, zero_stage=1)
