"""Load a `cocolm export-hf` directory in Hugging Face transformers and compare.

Usage: hf_electra.py EXPORT_DIR IO_FILE

IO_FILE (safetensors, f32) holds `input_ids` [batch, seq] (ids as floats), `lengths`
[batch] and `hidden` [batch, seq, H], cocolm's last hidden state of the corrector.
Prints JSON: the relative error ||ours - hf|| / ||hf|| over the real positions, for the
corrector (ElectraModel) and for the generator's logits (ElectraForMaskedLM) when the
file has `generator_logits`.
"""

import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, ElectraForMaskedLM, ElectraModel


def relative(ours, theirs):
    return float(torch.linalg.norm(ours - theirs) / torch.linalg.norm(theirs))


def main():
    export, io_path = sys.argv[1], sys.argv[2]
    io = load_file(io_path)
    ids = io["input_ids"].long()
    lengths = io["lengths"].long()
    batch, seq = ids.shape
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    real = mask.bool()
    out = {}
    model = ElectraModel.from_pretrained(export).eval()
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    out["corrector"] = relative(io["hidden"][real], hidden[real])
    if "generator_logits" in io:
        generator = ElectraForMaskedLM.from_pretrained(export + "/generator").eval()
        with torch.no_grad():
            logits = generator(input_ids=ids, attention_mask=mask).logits
        out["generator"] = relative(io["generator_logits"][real], logits[real])
    # The tokenizer loads too, and gives ids within the vocabulary.
    tokenizer = AutoTokenizer.from_pretrained(export)
    out["tokenizer_ids"] = tokenizer("call me ishmael")["input_ids"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
