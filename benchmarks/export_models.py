"""Exports the networks of the performance table beyond the zoo to ONNX, with random weights:
torchvision's mobilenet_v3_large, efficientnet_b0 and shufflenet_v2_x1_0 (batch 1, 3 x 224 x 224) and
a 2-layer BERT from transformers' BertConfig (hidden 128, 2 heads, intermediate 512, sequence 32).

    python benchmarks/export_models.py OUT_DIR

Needs torch, torchvision and transformers, which pdc itself does not (install them in a separate
environment). The files then go to the other benchmarks, e.g.
`python benchmarks/versions.py --baseline ../pdc-before --models "" --arm-models OUT_DIR/bert_2l.onnx,...`.
"""
from __future__ import annotations

import os
import sys


def main(out: str) -> int:
    import torch
    import torchvision
    from transformers import BertConfig, BertModel

    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)

    def save(model, args, name, inputs, outputs=None):
        path = os.path.join(out, f"{name}.onnx")
        torch.onnx.export(model.eval(), args, path, opset_version=17, dynamo=False, input_names=inputs,
                          output_names=outputs)
        print(f"wrote {path}", flush=True)

    image = torch.randn(1, 3, 224, 224)
    for name in ("mobilenet_v3_large", "efficientnet_b0", "shufflenet_v2_x1_0"):
        save(getattr(torchvision.models, name)(), image, name, ["x"])

    class Bert(torch.nn.Module):  # the last hidden state of ids and mask, as a deployment calls it
        def __init__(self):
            super().__init__()
            cfg = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                             vocab_size=1000)
            self.bert = BertModel(cfg)

        def forward(self, ids, mask):
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.randint(0, 1000, (1, 32))
    save(Bert(), (ids, torch.ones(1, 32, dtype=torch.int64)), "bert_2l", ["input_ids", "attention_mask"],
         ["last_hidden_state"])
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
