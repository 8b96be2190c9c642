"""Writes a tiny Qwen2 text model folder for ``vllm serve --load-format dummy``.

Run with the real-vLLM venv's python (it has ``tokenizers`` and ``transformers``):
``make_tiny.py OUT_DIR CORPUS_DIR``. The folder holds config.json, generation_config.json and
a byte-level BPE tokenizer trained on the ``*.md`` files of CORPUS_DIR, with a ChatML chat
template; no weights (vLLM makes random ones) and nothing downloaded. Output text is random.
"""

import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# 2 layers, hidden 128, 1 KV head: loads in 0.1 s and fits a 1 GiB CPU KV cache many times.
CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "vocab_size": 2048,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "use_sliding_window": False,
}
# Ids 0..2 are the first special tokens below, as CONFIG's bos/eos/pad ids say.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def main(out: Path, corpus: Path) -> None:
    texts = [p.read_text(encoding="utf-8") for p in sorted(corpus.glob("*.md"))]
    if not texts:
        sys.exit(f"make_tiny.py: {corpus}: no *.md files to train the tokenizer on")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 512
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    (out / "config.json").write_text(json.dumps(CONFIG, indent=1))
    generation = {k: CONFIG[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    (out / "generation_config.json").write_text(json.dumps(generation))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
