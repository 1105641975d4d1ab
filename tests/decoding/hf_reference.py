"""A `DecoderModel` over tiny random-weight transformers models, and the models themselves.

The adapter recomputes the whole sequence at every call (no cache): slow, simple, and exactly the
logits transformers computes for that sequence, so any difference from `generate` is the search's.
`state.select` indexes the token histories (and the encoder output of encoder-decoders).

Weights are redrawn larger than transformers' 0.02 init so that next-token distributions are peaked
(a flat distribution makes argmax ties, and ties make parity a coin toss).
"""

from __future__ import annotations

import numpy as np
import torch

torch.set_num_threads(1)

VOCAB = 61


def _randomize(model: torch.nn.Module, seed: int, scale: float) -> torch.nn.Module:
    """Matrices N(0, scale^2 / fan_in), norm gains ~1, biases ~0; frozen tables left alone."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.copy_(scale * noise / p.shape[-1] ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return model.eval()


def tiny_decoder(kind: str, seed: int = 0, scale: float = 2.0):
    """A decoder-only language model: 'gpt2' or 'llama'."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if kind == "gpt2":
        config = GPT2Config(vocab_size=VOCAB, n_embd=24, n_layer=2, n_head=2, n_positions=96,
                            bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model = GPT2LMHeadModel(config)
    elif kind == "llama":
        config = LlamaConfig(vocab_size=VOCAB, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=96,
                             bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
    else:
        raise ValueError(kind)
    return _randomize(model, seed, scale)


def tiny_seq2seq(kind: str, seed: int = 0, scale: float = 2.0):
    """An encoder-decoder: 'marian' (decoding starts from pad) or 'bart' (from eos)."""
    from transformers import BartConfig, BartForConditionalGeneration, MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, d_model=24, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=96)
    if kind == "marian":
        model = MarianMTModel(MarianConfig(**common, pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1,
                                           eos_token_id=0, bos_token_id=VOCAB - 1, forced_eos_token_id=None))
    elif kind == "bart":
        model = BartForConditionalGeneration(BartConfig(**common, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                                        decoder_start_token_id=2, forced_eos_token_id=None,
                                                        forced_bos_token_id=None))
    else:
        raise ValueError(kind)
    model.set_attn_implementation("eager")  # the one that returns attention weights
    return _randomize(model, seed, scale)


class HistoryState:
    """Per row: the decoder tokens read so far (and, for encoder-decoders, the encoder output)."""

    def __init__(self, histories, encoder=None, source_mask=None):
        self.histories = histories
        self.encoder = encoder  # (B, S, C) tensor
        self.source_mask = source_mask  # (B, S) tensor

    @property
    def batch_size(self) -> int:
        return len(self.histories)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(h) for h in self.histories], dtype=np.int32)

    def select(self, rows) -> None:
        rows = [int(r) for r in rows]
        self.histories = [list(self.histories[r]) for r in rows]
        if self.encoder is not None:
            self.encoder = self.encoder[rows]
            self.source_mask = self.source_mask[rows]


class HFAdapter:
    """`DecoderModel` (and `decode_with_attention` for encoder-decoders) over a transformers model."""

    def __init__(self, model):
        self.model = model
        self.vocab_size = model.config.vocab_size
        self.calls = []  # batch size of every decode call: tests check that finished rows leave
        if not model.config.is_encoder_decoder:
            self.decode_with_attention = None  # no source, no attention: the optional hook is absent

    def start(self, sources=None) -> HistoryState:
        """Empty state for len(sources) rows; runs the encoder for encoder-decoders."""
        if not self.model.config.is_encoder_decoder:
            return HistoryState([[] for _ in range(sources)])
        ids, mask = _pad(sources, self.model.config.pad_token_id)
        with torch.no_grad():
            encoder = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        return HistoryState([[] for _ in sources], encoder, mask)

    def decode(self, state, ids, lengths=None, *, all_logits=False):
        logits, _ = self._forward(state, ids, lengths, all_logits, attention=False)
        return logits

    def decode_with_attention(self, state, ids, lengths=None):
        return self._forward(state, ids, lengths, all_logits=True, attention=True, last_only=True)

    def _forward(self, state, ids, lengths, all_logits, attention, last_only=False):
        ids = np.asarray(ids)
        lengths = np.full(len(ids), ids.shape[1]) if lengths is None else np.asarray(lengths)
        before = state.lengths
        for h, row, n in zip(state.histories, ids, lengths):
            h.extend(int(t) for t in row[:n])
        self.calls.append(len(ids))
        tokens, _ = _pad(state.histories, 0)
        with torch.no_grad():
            if state.encoder is None:
                out = self.model(input_ids=tokens, use_cache=False)
            else:
                out = self.model(encoder_outputs=(state.encoder,), attention_mask=state.source_mask,
                                 decoder_input_ids=tokens, use_cache=False, output_attentions=attention)
        full = out.logits.float().numpy()  # (B, L, V)
        weights = out.cross_attentions[-1].mean(dim=1).float().numpy() if attention else None  # (B, L, S)
        b = np.arange(len(ids))
        if not all_logits:
            return full[b, before + lengths - 1], None
        positions = before[:, None] + np.arange(ids.shape[1])[None, :]
        valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        positions = np.where(valid, positions, 0)
        logits = np.where(valid[..., None], full[b[:, None], positions], 0).astype(np.float32)
        if last_only:
            logits = logits[b, np.maximum(lengths - 1, 0)]
        if weights is None:
            return logits, None
        return logits, np.where(valid[..., None], weights[b[:, None], positions], 0).astype(np.float32)


def _pad(sequences, pad_id):
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), max(width, 1)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def hf_generate(model, inputs, decoder_prefix=None, **kwargs):
    """transformers `generate` for one example: the new tokens of each returned sequence (cut after
    its first end token) and the raw output (scores, sequences_scores)."""
    ids = torch.tensor([list(inputs)], dtype=torch.long)
    args = dict(input_ids=ids, attention_mask=torch.ones_like(ids), return_dict_in_generate=True,
                output_scores=True, do_sample=False, pad_token_id=model.config.pad_token_id)
    skip = ids.shape[1]
    if decoder_prefix is not None:
        args["decoder_input_ids"] = torch.tensor([list(decoder_prefix)], dtype=torch.long)
    if model.config.is_encoder_decoder:
        skip = 1 if decoder_prefix is None else len(decoder_prefix)
    out = model.generate(**args, **kwargs)
    eos = kwargs["eos_token_id"]
    eos = set(eos if isinstance(eos, list) else [eos])
    sequences = []
    for row in out.sequences[:, skip:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        sequences.append(row[:cut])
    return sequences, out
