"""HuggingFaceH4/ultrafeedback_binarized (train_prefs / test_prefs; the *_sft and *_gen splits are not
read). Native columns: prompt, prompt_id, chosen and rejected (lists of {role, content}: the user turn,
then the judged assistant reply), messages, score_chosen, score_rejected.

  prompt, chosen, rejected = the shared history and the two final replies, rendered by --template:
    hh   (default) "\\n\\nHuman: " + user + "\\n\\nAssistant:", " " + reply
    chat the tokenizer's chat template (the prompt with the generation prompt; each reply is the rest)

DeepSpeed-Chat has no adapter for it. Histories that differ between chosen and rejected
(`prompt_mismatch`), lists not ending in an assistant turn (`no_assistant_turn`), empty texts and
identical replies are counted drops. score_chosen and score_rejected are kept as the pair's scores;
a pair whose two scores are equal is dropped as `tie` (--keep-ties keeps it).

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

from dataclasses import replace

from dataprep.sources.chat import PAIRS
from dataprep.sources.spec import Spec

# Its scores are the chosen and rejected completions' overall_score (1-10) in openbmb/UltraFeedback.
ADAPTER = replace(PAIRS, name="ultrafeedback", required=("chosen", "rejected"), scores=("score_chosen", "score_rejected"))
SPECS = (Spec(name="ultrafeedback", hub_id="HuggingFaceH4/ultrafeedback_binarized", adapter=ADAPTER, aliases=("ultrafeedback_binarized",),
              train=("train_prefs",), eval=("test_prefs",),
              native="prompt, prompt_id, chosen[{role, content}], rejected[...], messages[...], score_chosen, score_rejected"),)
