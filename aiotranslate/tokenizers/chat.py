"""Chat templates: a model's Jinja template turning a list of messages into its prompt text.

    render_chat(template, [{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                bos_token="<s>", eos_token="</s>") -> "<|im_start|>user\\nHi<|im_end|>\\n..."

The template comes with the model (a GGUF's `tokenizer.chat_template`, a directory's
tokenizer_config.json `chat_template` or chat_template.jinja: `read_chat_template`) and is untrusted
code, so it runs in Jinja's `ImmutableSandboxedEnvironment`, configured as transformers' chat
templates expect it (`utils/chat_template_utils.py`): trim_blocks and lstrip_blocks, the loopcontrols
extension, a `tojson` filter that does not escape HTML, and the `raise_exception(message)` and
`strftime_now(format)` globals that templates call.

What it is not: tokenization of the rendered text (`HFTokenizer.apply_chat_template`), tool calling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from ..errors import ModelLoadError
from .base import read_json

JINJA_INSTALL_HINT = "pip install jinja2"


@lru_cache(maxsize=8)
def _compile(template: str):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, object]],
    *,
    add_generation_prompt: bool = True,
    **special_tokens: str | None,
) -> str:
    """The prompt text of `messages` (dicts with at least "role" and "content"); `special_tokens`
    (bos_token, eos_token, ...) are the names templates read. A template error (a role it refuses,
    a malformed template) is a ValueError."""
    try:
        import jinja2
    except ImportError as e:
        raise ImportError(f"chat templates need jinja2: {JINJA_INSTALL_HINT}") from e

    messages = [dict(m) for m in messages]
    for m in messages:
        if not isinstance(m.get("role"), str) or "content" not in m:
            raise ValueError(f"each message needs a 'role' string and a 'content', got {m!r}")
    try:
        return _compile(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens
        )
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"chat template: {e}") from e


def read_chat_template(model_dir: Path) -> str | None:
    """The chat template a Hugging Face model directory ships: chat_template.jinja, else the
    "chat_template" of tokenizer_config.json (a string, or a list of named templates: "default")."""
    jinja_file = model_dir / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    config = model_dir / "tokenizer_config.json"
    template = read_json(config).get("chat_template") if config.is_file() else None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise ModelLoadError(f"{config}: chat_template should be a string or a list of named templates")
    return template
