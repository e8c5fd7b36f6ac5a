"""A tiny trainable model over real token ids, shared by the fault tests of the training loop."""
import torch


class Killed(RuntimeError):
    """Raised from inside a run to stand for the process being killed mid-training."""


class BagOfWords(torch.nn.Module):
    """A tiny relation classifier over real token ids: enough for the trainer to checkpoint and resume."""

    def __init__(self, vocab: int, labels: int):
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(vocab, 8, mode="mean")
        self.out = torch.nn.Linear(8, labels)

    def forward(self, input_ids, offsets, labels):
        logits = self.out(self.embed(input_ids, offsets))
        return {"loss": torch.nn.functional.cross_entropy(logits, labels)}


def collate(rows):
    ids = [torch.tensor(r["input_ids"]) for r in rows]
    offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
    return {"input_ids": torch.cat(ids), "offsets": offsets, "labels": torch.tensor([r["label"] for r in rows])}
