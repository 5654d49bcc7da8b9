"""Print the ids Python `tokenizers` gives for some texts, encoded the way cocolm encodes.

Usage: python3 python_ids.py TOKENIZER_JSON < texts.json > ids.json

`texts.json` is a JSON array of strings; the output is a JSON array holding one array of ids
per text. Like cocolm: no special tokens added (no post-processor), no truncation or padding,
and special-token strings inside the text encoded as text.
"""

import json
import sys

from tokenizers import Tokenizer


def main() -> None:
    tokenizer = Tokenizer.from_file(sys.argv[1])
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.encode_special_tokens = True
    texts = json.load(sys.stdin)
    ids = [tokenizer.encode(text, add_special_tokens=False).ids for text in texts]
    json.dump(ids, sys.stdout)


if __name__ == "__main__":
    main()
