"""Users' chat-message data: columns holding lists of {"role", "content"}, rendered by --template
(messages.py: the HH Human/Assistant form by default, or the tokenizer's chat template).

Pairs ("chat" adapter): `chosen` and `rejected` are whole conversations ending in the assistant reply
they are judged on (UltraFeedback's layout); their histories must agree (`prompt_mismatch`). When
`chosen` holds only the reply, the history comes from `prompt` (a string, as one user turn, or a
message list). Without a `rejected` column every row is SFT-only (phases 1 and 3).

Conversations ("messages" adapter): one `messages` list per row, SFT-only; the last assistant turn is
the response, everything before it the prompt.

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

from dataprep.sources.dataset import SCORES
from dataprep.sources.messages import render, split_last, turns
from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, Skip, build, pair_reason
from dataprep.sources.spec import Adapter, Normalizer


def _history(row: dict, chosen_history: list[dict[str, str]]) -> list[dict[str, str]]:
    if chosen_history or row.get("prompt") is None:
        return chosen_history
    prompt = row["prompt"]
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else turns(prompt, "prompt")


def pair_row(row: dict, opts: AdapterOptions) -> Row:
    history, chosen = split_last(turns(row.get("chosen"), "chosen"))
    rejected = None
    if "rejected" in row:  # the column exists: every row must have its rejected conversation
        rejected_history, rejected = split_last(turns(row.get("rejected"), "rejected"))
        if rejected_history != history:
            raise Skip("prompt_mismatch")
    history = _history(row, history)
    if not history:
        raise Skip("empty_prompt")
    reason = pair_reason(" ".join(m["content"] for m in history), chosen, rejected)
    prompt, (chosen_text, rejected_text), spans = render(history, [chosen, rejected], opts)
    return Row(prompt, chosen_text, rejected_text, reason, assistant_spans=spans)


def messages_row(row: dict, opts: AdapterOptions) -> Row:
    history, reply = split_last(turns(row.get("messages"), "messages"))
    if not history:
        raise Skip("empty_prompt")
    reason = pair_reason(" ".join(m["content"] for m in history), reply, None)
    prompt, (chosen,), spans = render(history, [reply], opts)
    return Row(prompt, chosen, None, reason, assistant_spans=spans)


def _pairs(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, ("prompt", "chosen", "rejected"), lambda row: pair_row(row, opts), opts.strict)


def _messages(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, ("messages",), lambda row: messages_row(row, opts), opts.strict)


_RENDERED = "rendered by --template: hh (\\n\\nHuman: ...\\n\\nAssistant:, \" \"+reply) or chat (tokenizer template)"
PAIRS = Adapter(name="chat", columns=("prompt", "chosen", "rejected"), text_fields=(), required=("chosen",), phases=(1, 2, 3),
                formatting=f"history, final replies {_RENDERED}", make=_pairs, version=2, scores=SCORES)
MESSAGES = Adapter(name="messages", columns=("messages",), text_fields=(), required=("messages",), phases=(1, 3),
                   formatting=f"history, last assistant turn {_RENDERED}; SFT-only", make=_messages)
