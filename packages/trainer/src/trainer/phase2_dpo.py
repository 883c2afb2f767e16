"""DPO on dataprep's phase-2 shards (DeepSpeed-Chat's step2_dpo_finetuning): the policy learns the
preferences directly, with no reward model.

    python -m trainer.phase2_dpo --shards out/hh --model_name_or_path ckpt/phase1 --output_dir ckpt/dpo

--loss sigmoid (DPO; with --label_smoothing, conservative DPO), ipo or simpo; dpo.py has the maths.
The reference is the policy's starting weights unless --ref_model_name_or_path says otherwise. Its
log-probs are computed once before training into OUTPUT_DIR/reference/ (reference.py) and reused by
a resumed run (or one given a copy of that folder) on the same shards and reference; the reference
model is then freed before the policy is built. --precompute_ref off keeps it as a frozen engine beside the policy instead. SimPO needs none.
Per step and at eval: the loss, the chosen and rejected implicit rewards, their margin and the share
of pairs ranked right. With --packing a pair's two rows share a pack (packing.py) and each row's
answer log-prob is summed over its own tokens, so the losses are the unpacked ones. The loop is loop.run.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import numpy as np
import torch

from dataprep.format import TOKEN_COLUMNS, TokenizerInfo
from trainer import dpo, flags as F, packing, reference as R, runtime
from trainer.collate import PairCollator, pair_count
from trainer.loop import Packed, Recipe, Step, run
from trainer.models import causal_lm, load_config, partitioned
from trainer.shard_dataset import ShardDataset


@dataclass(frozen=True, kw_only=True)
class DPOFlags(F.TrainFlags):
    learning_rate: float = F.flag(5e-5, "peak learning rate (DeepSpeed-Chat's DPO recipe; its argparse default, 1e-3, is an SFT rate)")
    dropout: float | None = F.flag(0.0, "set every dropout of the policy to this: off by default, as the policy's log-probs are "
                                        "compared with the reference's (DeepSpeed-Chat's recipe, TRL's default)")
    loss: str = F.flag("sigmoid", "sigmoid: DPO (conservative with --label_smoothing); ipo; simpo: length-normalised, no reference",
                       dpo.LOSSES)
    beta: float | None = F.flag(None, "sigmoid and ipo: the KL strength (default 0.1); simpo: the reward scale (default 2.0, "
                                      "princeton-nlp/SimPO's SimPOConfig; the paper, Meng et al. 2024, uses 2.0 to 2.5)")
    label_smoothing: float = F.flag(0.0, "sigmoid and simpo: the assumed share of flipped preferences, in [0, 0.5)")
    simpo_gamma: float | None = F.flag(None, "simpo: the target reward margin (default 0.25 beta, SimPOConfig's gamma_beta_ratio: "
                                             "0.5 at beta 2.0); refused with the other losses, which have none")
    ref_model_name_or_path: str | None = F.flag(None, "the reference model (default: the policy's starting weights)")
    precompute_ref: str = F.flag("on", "on: the reference's log-probs once before training, cached in OUTPUT_DIR/reference; "
                                       "off: computed every step by a frozen reference kept in memory", ("on", "off"))

    def __post_init__(self) -> None:
        super().__post_init__()
        # Each loss's own defaults: DPO's beta 0.1 would give SimPO a target margin of gamma / beta = 5 nats per token.
        if self.beta is None:
            object.__setattr__(self, "beta", 2.0 if self.loss == "simpo" else 0.1)
        if self.loss == "simpo" and self.simpo_gamma is None:
            object.__setattr__(self, "simpo_gamma", 0.25 * self.beta)
        if self.loss != "simpo" and self.simpo_gamma is not None:
            raise ValueError(f"--simpo_gamma applies to --loss simpo; {self.loss} has no target margin")
        if self.beta <= 0:
            raise ValueError(f"--beta {self.beta}: must be above 0")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"--label_smoothing {self.label_smoothing}: must be in [0, 0.5)")
        if self.loss == "ipo" and self.label_smoothing:
            raise ValueError("--label_smoothing applies to --loss sigmoid and simpo; IPO has none")
        if self.loss == "simpo" and self.ref_model_name_or_path:
            raise ValueError("--loss simpo uses no reference model: leave out --ref_model_name_or_path")

    @property
    def objective(self) -> dpo.Objective:
        return dpo.Objective(self.loss, self.beta, self.label_smoothing, self.simpo_gamma or 0.0)  # 0.0: unused by sigmoid and ipo


class Reference:
    """Where a batch's reference log-probs come from: the batch itself (cached before training), or a
    frozen engine kept for the run (--precompute_ref off)."""

    def __init__(self, flags: DPOFlags):
        self.flags, self.engine, self._fingerprint = flags, None, None

    def build(self, tokenizer, world: int):
        """The frozen reference engine: ZeRO-3 when the policy is, else whole on every rank."""
        f = self.flags
        spec = runtime.EngineSpec(f.per_device_eval_batch_size, 1, 3 if f.zero_stage == 3 else 0, f.dtype)
        torch.manual_seed(f.seed)  # built from a config, it gets the weights the policy will start from
        attention = packing.varlen_kernel(f.packing, f.dtype)  # the policy's kernel: it scores the same packed batches
        with partitioned(runtime.ds_config(spec, world)):
            if f.ref_model_name_or_path:
                model = causal_lm(f.ref_model_name_or_path, None, tokenizer, attention=attention)
            else:
                model = causal_lm(f.model_name_or_path, f.model_config, tokenizer, attention=attention)
        return runtime.frozen_engine(model, spec, world)

    def check(self, tokenizer: TokenizerInfo) -> None:
        """Refuse a --ref_model_name_or_path with another tokenizer than the shards', before its weights
        load: it would score the shards' ids as its own, from random embedding rows where its vocabulary
        is smaller, and the cache would keep those log-probs. (The default reference is the policy,
        which the loop checks.)"""
        path = self.flags.ref_model_name_or_path
        if path:
            runtime.check_tokenizer(self.flags.shards, tokenizer, path, load_config(path))

    def fingerprint(self, tokenizer: TokenizerInfo, device: torch.device) -> str:
        """What identifies the reference's weights, as `build` makes them: the cache key's part, and the
        run's identity's (computed once: a directory's weights are hashed)."""
        if self._fingerprint is None:
            f = self.flags
            partitioned_on = device.type if f.zero_stage == 3 else None  # build partitions it when the policy is
            name, config = (f.ref_model_name_or_path, None) if f.ref_model_name_or_path else (f.model_name_or_path, f.model_config)
            self._fingerprint = R.fingerprint(name, config, tokenizer, f.seed, partitioned_on)
        return self._fingerprint

    def identity(self, tokenizer: TokenizerInfo, device: torch.device) -> dict:
        """The reference's part of the run's identity (SimPO has none)."""
        return {"reference": self.fingerprint(tokenizer, device) if self.flags.objective.needs_reference else None}

    def setup(self, train: ShardDataset, evals: ShardDataset, rank: int, world: int, device: torch.device) -> tuple:
        """Before the policy exists: the datasets to train on, with cached reference log-probs, or the engine."""
        f = self.flags
        if not f.objective.needs_reference:
            return train, evals
        self.check(train.tokenizer)
        if f.precompute_ref == "off":
            self.engine = self.build(train.tokenizer, world)
            return train, evals
        fingerprint = self.fingerprint(train.tokenizer, device)
        caches = {d.side: R.Cache(f.output_dir / "reference" / f"{d.side}.arrow", R.cache_key(d, fingerprint, f.dtype)) for d in (train, evals)}
        values = {d.side: _from_rank0(lambda: caches[d.side].read(len(d)), rank, len(d), device) for d in (train, evals)}
        missing = [d for d in (train, evals) if values[d.side] is None]
        if missing:
            engine = self.build(train.tokenizer, world)
            collate = PairCollator(train.tokenizer.pad_or_eos)
            for d in missing:
                values[d.side] = R.compute(engine, d, collate, f.per_device_eval_batch_size, rank, world, device)
                if rank == 0:
                    caches[d.side].write(values[d.side])
            engine.destroy()
            del engine
            gc.collect()  # the reference's memory goes back before the policy is built
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if rank == 0:
            for d in (train, evals):
                print(f"trainer: reference log-probs of {len(d)} {d.side} pairs {'computed' if d in missing else 'reused'}: "
                      f"{caches[d.side].path}", flush=True)
        return R.WithReference(train, values["train"]), R.WithReference(evals, values["eval"])

    def logps(self, batch: dict, packed: bool) -> torch.Tensor | None:
        if "ref_logps" in batch:
            return batch["ref_logps"]
        if self.engine is None:
            return None
        with torch.no_grad():
            return answer_logps(self.engine, batch, packed)[0]


def _from_rank0(read, rank: int, rows: int, device: torch.device) -> np.ndarray | None:
    """Rank 0's cached values (or None) on every rank: only rank 0 reads the side file, so the ranks
    agree even when the output directory is not shared between machines; a file rank 0 refuses stops
    every rank, none is left waiting."""
    values, refusal = None, None
    if rank == 0:
        try:
            values = read()
        except SystemExit as exc:
            refusal = exc
    status = torch.tensor([2 if refusal else int(values is not None)], device=device)  # 0 none, 1 found, 2 refused
    torch.distributed.broadcast(status, 0)
    if status.item() == 2:
        raise refusal if refusal else SystemExit(1)  # rank 0 prints the one line
    if status.item() == 0:
        return None
    tensor = torch.as_tensor(values, device=device) if rank == 0 else torch.empty((rows, 2), dtype=torch.float64, device=device)
    torch.distributed.broadcast(tensor, 0)
    return tensor.cpu().numpy()


def answer_logps(model, batch: dict, packed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's summed answer log-prob and answer length under `model`: chosen rows, then rejected rows."""
    if packed:
        logits = model(**packing.model_inputs(batch, packing.attention_of(model)), use_cache=False).logits
        return dpo.packed_answer_logps(logits, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return dpo.answer_logps(logits, batch["input_ids"], batch["attention_mask"], batch["prompt_len"])


def score(engine, batch: dict, reference: Reference, objective: dpo.Objective, packed: bool = False) -> dpo.Scored:
    policy, lengths = answer_logps(engine, batch, packed)
    return dpo.preference_loss(objective, policy, reference.logps(batch, packed), lengths)


def eval_metrics(totals: dict[str, float]) -> dict:
    pairs = max(totals["pairs"], 1)
    chosen, rejected = totals["chosen_sum"] / pairs, totals["rejected_sum"] / pairs
    return {"eval_loss": totals["loss_sum"] / pairs, "eval_accuracy": totals["correct"] / pairs,
            "eval_chosen_reward": chosen, "eval_rejected_reward": rejected, "eval_margin": chosen - rejected}


def recipe(flags: DPOFlags) -> Recipe:
    reference, objective = Reference(flags), flags.objective

    def step(engine, batch: dict, packed: bool = False) -> Step:
        scored = score(engine, batch, reference, objective, packed)
        logged = {"chosen_reward": scored.chosen_reward.mean().item(), "rejected_reward": scored.rejected_reward.mean().item(),
                  "reward_accuracy": scored.correct.double().mean().item(), "reward_margin": scored.margin.mean().item()}
        tokens = packing.real_tokens(batch) if packed else int(batch["attention_mask"].sum())
        return Step(scored.loss.sum(), tokens=tokens, samples=len(scored.loss), logged=logged)

    def eval_sums(engine, batch: dict) -> torch.Tensor:
        s = score(engine, batch, reference, objective)
        return torch.stack([s.loss.sum(), s.correct.sum().double(), torch.tensor(float(len(s.loss)), dtype=torch.float64, device=s.loss.device),
                            s.chosen_reward.sum(), s.rejected_reward.sum()])

    return Recipe(
        script="phase2_dpo",
        phase=2,
        model=lambda f, tokenizer: causal_lm(f.model_name_or_path, f.model_config, tokenizer, f.dropout,
                                             packing.varlen_kernel(f.packing, f.dtype)),
        collator=lambda pad_id, width: PairCollator(pad_id, pad_to=width),
        step=step,
        units=pair_count,
        eval_names=("loss_sum", "correct", "pairs", "chosen_sum", "rejected_sum"),
        eval_sums=eval_sums,
        eval_metrics=eval_metrics,
        panels=(("loss", "eval_loss"), ("reward_accuracy", "eval_accuracy"), ("chosen_reward", "rejected_reward"), ("reward_margin",)),
        setup=reference.setup,
        identity=reference.identity,
        packed=Packed(collator=lambda pad_id, width: packing.PackedCollator(pad_id, TOKEN_COLUMNS[2], pad_to=width),
                      step=lambda engine, batch: step(engine, batch, packed=True)),
    )


@runtime.one_line_errors
def main(argv: list[str] | None = None) -> None:
    flags = F.parse(DPOFlags, "DPO, IPO or SimPO on dataprep's phase-2 shards.", argv)
    run(flags, recipe(flags))


if __name__ == "__main__":
    main()
