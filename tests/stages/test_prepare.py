from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

from safetax.data.chat import IGNORE_INDEX
from safetax.records import read_jsonl
from safetax.stages import prepare


def test_direct_refusal_format_becomes_sft_examples(tiny_model: Path, tmp_path: Path) -> None:
    """DirectRefusal rows hold "Question: ... Answer: ..." in `refusal`; the answer is the SFT target."""
    path = tmp_path / "direct_refusal.jsonl"
    rows = [{"refusal": f"Question: Explain restricted task {i}.\nAnswer: I'm sorry, I can't help with that."} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = prepare.run(prepare.PrepareConfig(str(path), str(tiny_model), max_length=256), tmp_path / "sft")
    assert res.n_examples == 5 and res.n_truncated == 0
    tok = AutoTokenizer.from_pretrained(tiny_model)
    ex = read_jsonl(tmp_path / "sft" / prepare.SFT_FILE)[0]
    target = tok.decode([t for t in ex["labels"] if t != IGNORE_INDEX])
    assert target.endswith("</think>\n\nI'm sorry, I can't help with that." + tok.eos_token)
    assert "Question:" not in tok.decode(ex["input_ids"])
