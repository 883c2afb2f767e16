"""Chat-message layouts (lists of {"role", "content"}) -> prompt and response text.

Two renderings, chosen with --template:
  hh    Anthropic HH's form, the one DeepSpeed-Chat's Dahoas data uses:
        prompt = "\\n\\nHuman: u1\\n\\nAssistant: a1\\n\\nHuman: u2\\n\\nAssistant:", response = " " + reply.
        A system message is put first, as is, before the first "\\n\\nHuman:".
  chat  the tokenizer's own chat template: prompt = render(history, add_generation_prompt=True),
        response = render(history + [reply])[len(prompt):]. The assistant turns of the history are
        located in the prompt the same way, turn k spanning from the end of render(history[:k],
        add_generation_prompt=True) to the end of render(history[:k + 1]), end-of-turn tokens
        included: multi-turn SFT's loss mask (phases.py) marks them. A template whose full rendering does not
        start with its prompt rendering cannot be split and the row is dropped (`template_mismatch`);
        a template that raises on a row drops it (`template_error`). A leading BOS string the template
        writes is cut when the tokenizer adds BOS itself, so the ids hold one BOS. Templates get no
        `strftime_now`, so the text never depends on the build date.

Stage 2 of prepare (normalize), for the chat and ultrafeedback adapters.
"""

from __future__ import annotations

import json
from functools import lru_cache

from dataprep.errors import DataprepError
from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Skip

ROLES = {"user": "Human", "human": "Human", "assistant": "Assistant", "gpt": "Assistant"}


def turns(value: object, field: str) -> list[dict[str, str]]:
    """A validated message list: every item a {role, content} object with string values."""
    if value is None:
        raise Skip("missing_field", field)
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        raise Skip("wrong_type", field)
    return [{"role": m["role"], "content": m["content"]} for m in value]


def split_last(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], str]:
    """(history, final assistant reply); a list that does not end with an assistant turn is a drop."""
    if not messages or messages[-1]["role"] != "assistant":
        raise Skip("no_assistant_turn")
    return messages[:-1], messages[-1]["content"]


def render(history: list[dict[str, str]], responses: list[str | None], opts: AdapterOptions) -> tuple[str, list[str | None], list[int] | None]:
    """(prompt text, each response's text, the prompt's assistant spans) under opts.template. The hh
    form's spans are left to its markers (None); a chat template's are found as it renders."""
    if opts.template == "chat":
        return _render_chat(history, responses, opts)
    return _render_hh(history), [None if r is None else " " + r for r in responses], None


def _render_hh(history: list[dict[str, str]]) -> str:
    parts = []
    for message in history:
        role = ROLES.get(message["role"])
        if role is None and message["role"] == "system":
            parts.append(message["content"])
        elif role is None:
            raise Skip("unknown_role")
        else:
            parts.append(f"\n\n{role}: {message['content']}")
    return "".join(parts) + "\n\nAssistant:"


def _render_chat(history: list[dict[str, str]], responses: list[str | None], opts: AdapterOptions) -> tuple[str, list[str | None], list[int]]:
    template = _compile(opts.chat_template)
    tokens = dict(opts.special_tokens)

    def rendered(messages: list[dict[str, str]], generation: bool) -> str:
        return template.render(messages=messages, add_generation_prompt=generation, **tokens)

    try:
        prompt = rendered(history, True)
        whole = [None if r is None else rendered(history + [{"role": "assistant", "content": r}], False) for r in responses]
        spans = []
        for k, message in enumerate(history):
            if message["role"] == "assistant":
                before, through = rendered(history[:k], True), rendered(history[: k + 1], False)
                # A template that renders earlier turns differently from the last (some drop reasoning
                # from them) gives no span for this turn: it is left out of the loss, never guessed.
                if len(before) < len(through) and through.startswith(before) and prompt.startswith(through):
                    spans += [len(before), len(through)]
    except Exception:  # jinja's own errors and the template's raise_exception: this row cannot be rendered
        raise Skip("template_error") from None
    if any(w is not None and not w.startswith(prompt) for w in whole):
        raise Skip("template_mismatch")
    cut = len(prompt)
    if opts.strip_bos and prompt.startswith(opts.strip_bos):
        prompt = prompt[len(opts.strip_bos):]
        spans = [max(0, x - len(opts.strip_bos)) for x in spans]
    return prompt, [None if w is None else w[cut:] for w in whole], spans


class _TemplateRaised(Exception):
    pass


@lru_cache(maxsize=4)
def _compile(source: str | None):
    """A sandboxed Jinja environment set up as Hugging Face chat templates expect."""
    if not source:
        raise DataprepError("--template chat: the tokenizer has no chat template")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise _TemplateRaised(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, indent=indent, ensure_ascii=ensure_ascii)
    env.globals["raise_exception"] = raise_exception
    # No `strftime_now`: templates that look for it fall back to a fixed date, so the output does not
    # depend on the day it was built (a template that calls it anyway drops its rows as template_error).
    try:
        return env.from_string(source)
    except Exception as exc:
        raise DataprepError(f"--template chat: the tokenizer's chat template does not compile ({str(exc).splitlines()[0]})") from None
