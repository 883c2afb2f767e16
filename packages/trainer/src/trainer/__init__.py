"""trainer: thin DeepSpeed trainers for the three InstructGPT phases, fed by dataprep's shards.

This package reads pre-tokenized, memory-mapped shards and never tokenizes. The shard reader is here;
the phase 1 (SFT), phase 2 (reward model) and phase 3 (PPO) loops build on it.
"""

__version__ = "0.1.0"
