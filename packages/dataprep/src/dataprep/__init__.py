"""dataprep: RLHF preference data -> canonical Arrow tables -> DeepSpeed-Chat compatible splits ->
memory-mapped token shards with a manifest. Never imports torch."""

__version__ = "0.1.0"

# Bumped whenever the bytes written for the same inputs and options change; part of the cache key.
FORMAT_VERSION = 1
