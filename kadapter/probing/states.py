"""A causal LM's hidden states for many token sequences, computed once (batched, left padding, explicit position
ids) and kept on disk, so every probe variant and seed reads the same frozen states.

A causal backbone's state at position t depends only on tokens 0..t, so the states of a sequence's real tokens do
not depend on padding or batching (left padding with position ids counted over real tokens matches one sequence
per forward to float rounding; ``tests/test_probing_causal.py`` checks it). Stored per sequence: the final hidden
state (after the final norm: what the LM head reads) at every real token, and the hidden states at the requested
tap layers (what adapters read), as flat float32 ``.npy`` arrays ``(total_tokens, hidden)`` plus lengths.

The states are a :class:`kadapter.state_store.StoredStates` folder, like the feature cache: keyed by the same
backbone identity (:func:`kadapter.state_store.backbone_fingerprints`: recomputed after an in-place weight change)
plus the token ids and the taps, written under a temporary name and renamed when complete, a killed build's
temporary folder removed, a damaged folder named and rebuilt — so a stale or half-written cache is never read.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..backbone import BackboneFeatures
from ..progress import progress_bar
from ..state_store import StoredStates, backbone_fingerprints, write_meta

STATES_FORMAT = 2  # 2: keyed by the shared backbone fingerprints (1 hashed the core module its own way)


def core_module(backbone):
    """The module that computes hidden states: a causal LM's base model (without its vocabulary projection)."""
    return getattr(backbone, "base_model", backbone)


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ids, attention mask and position ids (0 at each sequence's first real token)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        if len(s):
            ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def right_pad(arrays: Sequence[np.ndarray], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(length_i, hidden) arrays -> (batch, width, hidden) zeros-padded on the right, and the attention mask."""
    width = width or max(len(a) for a in arrays)
    out = np.zeros((len(arrays), width, arrays[0].shape[1]), dtype=np.float32)
    mask = torch.zeros(len(arrays), width, dtype=torch.long)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
        mask[i, :len(a)] = 1
    return torch.from_numpy(out), mask


@torch.inference_mode()
def causal_forward(backbone, sequences: Sequence[Sequence[int]], pad_id: int, taps: Sequence[int] = ()
                   ) -> tuple[torch.Tensor, dict[int, torch.Tensor], torch.Tensor]:
    """One batched forward (left padding, position ids): final states, tap states (batch, width, hidden), mask."""
    device = next(backbone.parameters()).device
    ids, mask, positions = left_pad(sequences, pad_id)
    out = core_module(backbone)(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                   output_hidden_states=bool(taps), use_cache=False)
    final = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.hidden_states[-1]
    return final.float().cpu(), {t: out.hidden_states[t].float().cpu() for t in taps}, mask


def states_key(backbone, sequences: Sequence[Sequence[int]], taps: Sequence[int]) -> dict:
    """Everything the states depend on: the backbone (the same fingerprints as the feature cache's), the token ids
    and the taps. Its hash names the folder."""
    digest = hashlib.sha256()
    for s in sequences:
        digest.update(np.asarray(s, dtype=np.int64).tobytes() + b"|")
    return {"format": STATES_FORMAT, **backbone_fingerprints(backbone), "sequences": len(sequences),
            "token_ids": digest.hexdigest()[:16], "taps": sorted(int(t) for t in taps)}


class CausalStates(StoredStates):
    """Memory-mapped final and tap-layer states of a list of token sequences. Build with :meth:`build`."""

    FORMAT = STATES_FORMAT
    WHAT = "causal LM states"

    def array_names(self) -> list[str]:
        return ["final", *(f"hidden_{t}" for t in self.taps)]

    @property
    def directory(self) -> Path:
        return self.path

    @property
    def _final(self) -> np.ndarray:
        return self._arrays["final"]

    @property
    def _taps(self) -> dict[int, np.ndarray]:
        return {t: self._arrays[f"hidden_{t}"] for t in self.taps}

    @property
    def seconds(self) -> float:
        return float(self.meta.get("seconds", 0.0))

    @classmethod
    def build(cls, backbone, sequences: Sequence[Sequence[int]], *, pad_id: int, taps: Sequence[int] = (),
              root: str | Path | None = None, batch_size: int = 64, desc: str = "causal LM states") -> "CausalStates":
        """Read the states of ``sequences`` from ``root`` if this exact key is there, else compute them once.
        ``root=None`` keeps them in a temporary folder for this process only."""
        if not sequences or any(len(s) == 0 for s in sequences):
            raise ValueError("every sequence needs at least one token")
        key = states_key(backbone, sequences, taps)
        if root is None:
            import tempfile

            root = Path(tempfile.mkdtemp(prefix="kadapter-states-"))
        return cls.open_or_build(root, key, lambda directory: cls._compute(
            backbone, sequences, key, directory, pad_id, batch_size, desc))

    @staticmethod
    def _compute(backbone, sequences: Sequence[Sequence[int]], key: dict, directory: Path, pad_id: int,
                 batch_size: int, desc: str) -> None:
        started = time.perf_counter()
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        hidden = backbone.config.hidden_size
        arrays = {name: np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=np.float32,
                                                  shape=(int(offsets[-1]), hidden))
                  for name in ["final", *(f"hidden_{t}" for t in key["taps"])]}
        order = np.argsort(-lengths, kind="stable")  # similar lengths share a batch: little padding
        with progress_bar(total=len(sequences), desc=desc) as bar:
            for start in range(0, len(order), batch_size):
                index = order[start:start + batch_size]
                final, tapped, _ = causal_forward(backbone, [sequences[i] for i in index], pad_id, key["taps"])
                for name, tensor in [("final", final), *((f"hidden_{t}", tapped[t]) for t in key["taps"])]:
                    values = tensor.numpy()
                    for row, i in enumerate(index):  # left padding: the real tokens are the last lengths[i]
                        arrays[name][offsets[i]:offsets[i + 1]] = values[row, values.shape[1] - lengths[i]:]
                bar.update(len(index))
        for array in arrays.values():
            array.flush()
        del arrays
        np.save(directory / "lengths.npy", lengths)
        write_meta(directory, key, int(offsets[-1]), hidden, batch_size=batch_size,
                   seconds=round(time.perf_counter() - started, 2))

    # ------------------------------------------------------------------------------------------------- reading
    def last_final(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        """The final state at each sequence's last token, (n, hidden): what predicts the next token."""
        indices = range(len(self)) if indices is None else indices
        rows = np.array([self.offsets[i + 1] - 1 for i in indices], dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self._final[rows]))

    def final_tokens(self, indices: Sequence[int]) -> list[np.ndarray]:
        return [np.asarray(self._final[self.offsets[i]:self.offsets[i + 1]]) for i in indices]

    def features(self, indices: Sequence[int]) -> BackboneFeatures:
        """Right-padded :class:`BackboneFeatures` of sequences ``indices`` (tap states and final states): what an
        adapter reads. Right padding is exact for a causal adapter: a real position never sees a later one."""
        indices = [int(i) for i in indices]
        spans = [(self.offsets[i], self.offsets[i + 1]) for i in indices]
        last, mask = right_pad([np.asarray(self._final[a:b]) for a, b in spans])
        hidden = {t: right_pad([np.asarray(self._taps[t][a:b]) for a, b in spans])[0] for t in self.taps}
        return BackboneFeatures(hidden_states=hidden, last_hidden_state=last, attention_mask=mask)
