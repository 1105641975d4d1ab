"""Writers of small Marian files for tests: the binary model format (`write_binary`), the binary
lexical shortlist (`write_shortlist`) and a tiny random Bergamot model directory (`tiny_model_dir`).

They follow the layouts documented in `aiotranslate.convert.marian_binary` and
`aiotranslate.convert.shortlist` (Marian's saveItems and the shortlist header), so the readers
are tested against files written from the documented format, not from themselves.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

FLOAT32, INT8, INTGEMM8 = 0x404, 0x101, 0x4101


def item_float(name: str, array: np.ndarray) -> tuple:
    a = np.asarray(array, dtype="<f4")
    return name, FLOAT32, a.shape, a.tobytes()


def item_intgemm(name: str, logical: np.ndarray, type_code: int = INTGEMM8) -> tuple:
    """Quantize a float [K, N] weight (or a [V, C] "Wemb" table) as Marian stores it: int8 values in
    the stored layout (weights transposed), then the float32 multiplier q = 127 / max|w|."""
    w = np.asarray(logical, dtype=np.float32)
    mult = np.float32(127.0 / max(float(np.abs(w).max()), 1e-6))
    stored = w if "Wemb" in name or w.ndim != 2 else w.T
    q = np.clip(np.rint(stored * mult), -127, 127).astype(np.int8)
    return name, type_code, w.shape, q.tobytes() + struct.pack("<f", mult)


def item_config(text: str) -> tuple:
    data = text.encode()
    return "special:model.yml", INT8, (len(data),), data


def write_binary(path: Path, items: list[tuple], version: int = 1) -> Path:
    """items: (name, type code, shape, payload bytes); each payload is padded to 256 bytes."""
    padded = [payload + b"\0" * (-len(payload) % 256) for _, _, _, payload in items]
    out = [struct.pack("<QQ", version, len(items))]
    out += [struct.pack("<4Q", len(n) + 1, t, len(s), len(p)) for (n, t, s, _), p in zip(items, padded)]
    out += [n.encode() + b"\0" for n, _, _, _ in items]
    out += [struct.pack(f"<{len(s)}i", *s) for _, _, s, _ in items]
    pos = sum(len(b) for b in out)
    pad = ((pos + 8) // 256 + 1) * 256 - pos - 8  # saveItems: the data starts on a 256-byte boundary
    out += [struct.pack("<Q", pad), b"\0" * pad, *padded]
    path.write_bytes(b"".join(out))
    return path


def shortlist_checksum(body: bytes) -> int:
    seed = 0
    for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8]):
        seed ^= (v + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & ((1 << 64) - 1)
    return seed


def write_shortlist(path: Path, candidates: list[list[int]], first_num: int, best_num: int = 50) -> Path:
    """candidates[w]: the target ids of source word w."""
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in candidates])]).astype("<u8")
    words = np.array([t for c in candidates for t in c], dtype="<u4")
    body = struct.pack("<4Q", first_num, best_num, len(offsets), len(words)) + offsets.tobytes() + words.tobytes()
    path.write_bytes(struct.pack("<QQ", 0xF11A48D5013417F5, shortlist_checksum(body)) + body)
    return path


TINY = {"dim": 8, "heads": 2, "ffn": 12, "vocab": 24, "enc": 2, "dec": 2}

TINY_YML = """\
dec-cell: ssru
dec-depth: {dec}
dim-emb: {dim}
dim-vocabs:
  - {vocab}
  - {vocab}
enc-depth: {enc}
layer-normalization: false
output-omit-bias: false
tied-embeddings-all: true
transformer-decoder-autoreg: rnn
transformer-dim-ffn: {ffn}
transformer-ffn-activation: relu
transformer-ffn-depth: 2
transformer-heads: {heads}
transformer-postprocess: dan
transformer-postprocess-emb: d
transformer-postprocess-top: ""
transformer-preprocess: ""
transformer-tied-layers: []
type: transformer
version: v1.9.56 test
"""


def tiny_model_dir(directory: Path, seed: int = 0, edit_yml=lambda yml: yml) -> Path:
    """A random tiny Bergamot model (sizes in TINY) with a shortlist and a placeholder vocabulary;
    `edit_yml` rewrites its model.yml text."""
    rng = np.random.default_rng(seed)
    d, f, v = TINY["dim"], TINY["ffn"], TINY["vocab"]
    items = [item_config(edit_yml(TINY_YML.format(**TINY))), item_intgemm("Wemb", rng.normal(0, 0.5, (v, d)))]
    items.append(item_float("decoder_ff_logit_out_b", rng.normal(0, 0.1, (1, v))))

    def dense(prefix: str, n_in: int, n_out: int, bias: bool = True) -> None:
        items.append(item_intgemm(prefix, rng.normal(0, n_in**-0.5, (n_in, n_out))))
        if bias:
            b = prefix[: prefix.rindex("_W")] + "_b" + prefix[prefix.rindex("_W") + 2 :]
            items.append(item_float(b, rng.normal(0, 0.1, (1, n_out))))

    def norm(prefix: str) -> None:
        items.append(item_float(prefix + "_ln_scale", 1 + rng.normal(0, 0.1, (1, d))))
        items.append(item_float(prefix + "_ln_bias", rng.normal(0, 0.1, (1, d))))

    def ffn(prefix: str) -> None:
        dense(prefix + "_W1", d, f)
        dense(prefix + "_W2", f, d)
        norm(prefix + "_ffn")

    def attention(prefix: str) -> None:
        for part in "qkvo":
            dense(f"{prefix}_W{part}", d, d)
        norm(prefix + "_Wo")

    for i in range(1, TINY["enc"] + 1):
        attention(f"encoder_l{i}_self")
        ffn(f"encoder_l{i}_ffn")
    for i in range(1, TINY["dec"] + 1):
        p = f"decoder_l{i}"
        dense(p + "_rnn_W", d, d, bias=False)
        dense(p + "_rnn_Wf", d, d)
        norm(p + "_rnn_ffn")
        attention(p + "_context")
        ffn(p + "_ffn")
    directory.mkdir(parents=True, exist_ok=True)
    write_binary(directory / "model.xxyy.intgemm.alphas.bin", items)
    (directory / "vocab.xxyy.spm").write_bytes(b"")  # the model loader does not read it
    candidates = [sorted(rng.choice(np.arange(4, v), 3, replace=False).tolist()) for _ in range(v)]
    write_shortlist(directory / "lex.50.50.xxyy.s2t.bin", candidates, first_num=4)
    return directory
