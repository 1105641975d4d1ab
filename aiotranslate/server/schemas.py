"""Request bodies of the HTTP API (pydantic), and the sampling options they map to.

Unknown fields are refused (422 naming the field) rather than silently ignored: a client that sends
`stop` or `n=3` learns that this server does not do it. Bounds that depend on the server's
configuration (max_tokens, texts per request) are checked by the routes.

The generation bodies follow OpenAI's completions / chat completions (what vLLM serves), with vLLM's
extra sampling fields `top_k`, `min_tokens` and `repetition_penalty`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TranslationRequest(Body):
    """Options are the Translator's (CTranslate2's names); absent ones keep its defaults."""

    text: str | list[str]
    model: str | None = None
    beam_size: int | None = Field(None, ge=1, le=16)
    max_decoding_length: int | None = Field(None, ge=1)
    min_decoding_length: int | None = Field(None, ge=0)
    length_penalty: float | None = None
    repetition_penalty: float | None = Field(None, gt=0)
    no_repeat_ngram_size: int | None = Field(None, ge=0)
    sampling_topk: int | None = Field(None, ge=0)
    sampling_topp: float | None = Field(None, gt=0, le=1)
    sampling_temperature: float | None = Field(None, gt=0)
    seed: int | None = None

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"text", "model"})


class Sampling(Body):
    """OpenAI's sampling fields: temperature 0 is greedy decoding."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # vLLM's extra field; 0: the whole vocabulary
    min_tokens: int = Field(0, ge=0)  # vLLM's
    repetition_penalty: float = Field(1.0, gt=0)  # vLLM's
    seed: int | None = None
    n: Literal[1] = 1
    stream: bool = False

    def generation_options(self, max_tokens: int) -> dict[str, Any]:
        """The Generator's options for `max_tokens` new tokens."""
        greedy = self.temperature == 0
        return dict(
            max_length=max_tokens,
            min_length=min(self.min_tokens, max_tokens),
            sampling_topk=1 if greedy else self.top_k,
            sampling_topp=self.top_p,
            sampling_temperature=1.0 if greedy else self.temperature,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
        )


class CompletionRequest(Sampling):
    prompt: str = Field(min_length=1)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens


class EmbeddingRequest(Body):
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float"] = "float"
