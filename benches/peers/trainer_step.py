"""Peer 4: the training step. `torch_step.py` (the same COCO-LM step in PyTorch) against
`cocolm bench train` on configs/bench.toml (vocabulary 30,522, seq 128), alternating rounds;
mean step time, lower is better.

    python trainer_step.py [ROUNDS]
"""

import json
import os
import sys

from common import alternate, report, timed

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cores = os.environ["CORES"]
    config = os.path.join(os.environ["ROOT"], "configs", "bench.toml")

    def cocolm():
        _, out = timed([os.environ["COCOLM"], "bench", "train", "--config", config, "--vocab-size", "30522",
                        "--seq-len", "128"])
        return json.loads(out.strip().splitlines()[-1])["ms_per_step"]

    def pytorch():
        _, out = timed([sys.executable, os.path.join(HERE, "torch_step.py"), "--threads", cores,
                        "--workload", "coco-lm"])
        return json.loads(out.strip().splitlines()[-1])["ms_per_step"]

    results = alternate([("cocolm", cocolm), ("pytorch", pytorch)], rounds)
    report("trainer step (configs/bench.toml, 16 x 128)", "ms/step", results, higher_is_better=False,
           extra={"cores": int(cores)})


if __name__ == "__main__":
    main()
