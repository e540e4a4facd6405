"""A Hugging Face causal LM over a batch of growing token sequences, with a rollback-able KV cache.

Each row's cache holds the K/V of a prefix of that row's sequence. ``feed`` appends ragged new
tokens to every row in one forward and returns their logits; ``keep`` rolls each row back to a
given length (speculative decoding throws away rejected drafts). At batch 1 the rollback is the
cache's own ``crop``. With several rows the rows hold different lengths: each row's entries
are kept right-aligned in the shared ``DynamicCache`` tensors (left padding, hidden by the
attention mask, RoPE positions per row), and a rollback shifts every row's entries so that they
end at the last column again. The values themselves are never recomputed, so a row reads the
same K/V it would alone.
"""

from __future__ import annotations

import inspect

import torch


def _empty_cache():
    from dllm.models.lazy import from_transformers

    DynamicCache = from_transformers("DynamicCache")

    # Built without the model config, every layer is a full DynamicLayer, even for sliding-window
    # models (whose window is applied by the attention mask): it keeps every position, so it can
    # always be rolled back, where a windowed layer refuses to crop once the window is full.
    return DynamicCache()


def _left_pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, H, w, D]`` cache entries left-padded with zeros to ``width`` columns."""
    missing = width - tensor.shape[2]
    if not missing:
        return tensor
    return torch.cat([tensor.new_zeros((*tensor.shape[:2], missing, tensor.shape[3])), tensor], dim=2)


def crop_cache(cache, length: int) -> None:
    """Keep the first ``length`` positions of every layer (``DynamicCache.crop`` takes a length in
    transformers 4 and the number of positions to remove, negative, in transformers 5)."""
    current = cache.get_seq_length()
    if length >= current:
        return
    parameter = next(iter(inspect.signature(cache.crop).parameters))
    cache.crop(length if parameter == "max_length" else length - current)


class CausalRunner:
    """Batched incremental forwards of ``net`` (a ``transformers`` causal LM) with per-row rollback."""

    def __init__(self, net, pad_id: int):
        self.net, self.pad_id = net, pad_id
        self.device = next(net.parameters()).device
        # transformers 5.2x renamed ``past_key_values`` to ``cache`` (the old name is deprecated).
        self.cache_arg = (
            "cache" if "cache" in inspect.signature(net.forward).parameters else "past_key_values"
        )
        self.reset(0)

    def reset(self, batch: int) -> None:
        self.cache = _empty_cache()
        self.ids: list[list[int]] = [[] for _ in range(batch)]  # the tokens whose K/V each row caches
        self.width = 0
        self.forwards = 0

    @property
    def batch(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        return [len(row) for row in self.ids]

    def select(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in this order): finished rows leave the batch."""
        if rows == list(range(self.batch)):
            return
        self.ids = [self.ids[r] for r in rows]
        if self.width:
            index = torch.tensor(rows, dtype=torch.long, device=self.device)
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[index], layer.values[index]
        self._trim()

    def add(self, rows: int) -> None:
        """Append ``rows`` rows caching nothing yet (requests joining the batch)."""
        if not rows:
            return
        if self.width:
            for layer in self.cache.layers:
                layer.keys = torch.cat([layer.keys, layer.keys.new_zeros((rows, *layer.keys.shape[1:]))])
                layer.values = torch.cat(
                    [layer.values, layer.values.new_zeros((rows, *layer.values.shape[1:]))]
                )
        else:  # nothing cached in any row: the stored tensors (if any) may have another batch size
            self.cache = _empty_cache()
        self.ids += [[] for _ in range(rows)]

    def merge(self, other: "CausalRunner") -> None:
        """Append ``other``'s rows after ours (rows that ran their first forward apart), their
        caches right-aligned in the common width like ours."""
        if other.batch == 0:
            return
        if self.batch == 0 or not self.width:
            pad = self.batch
            self.cache, self.width = other.cache, other.width
            self.ids = self.ids + other.ids
            if pad and self.width:  # our rows cache nothing: all padding in the new width
                for layer in self.cache.layers:
                    layer.keys = torch.cat([layer.keys.new_zeros((pad, *layer.keys.shape[1:])), layer.keys])
                    layer.values = torch.cat(
                        [layer.values.new_zeros((pad, *layer.values.shape[1:])), layer.values]
                    )
            return
        width = max(self.width, other.width)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            for name in ("keys", "values"):
                parts = [_left_pad(getattr(layer, name), width) for layer in (mine, theirs)]
                setattr(mine, name, torch.cat(parts))
        self.ids = self.ids + other.ids
        self.width = width

    def feed(self, new: list[list[int]]) -> torch.Tensor:
        """Append ``new[b]`` to each row (a row may get none this time, not all); fp32 logits
        ``[B, F, V]`` for the fed columns (``F = max len(new[b])``; row b's column i predicts the
        token after ``new[b][i]``)."""
        if len(new) != self.batch or not any(new):
            raise ValueError(
                f"feed needs one token list per row ({self.batch}), at least one of them non-empty"
            )
        fed = max(len(tokens) for tokens in new)
        lengths = torch.tensor(self.lengths(), device=self.device)
        inputs = torch.full((self.batch, fed), self.pad_id, dtype=torch.long, device=self.device)
        for row, tokens in enumerate(new):
            inputs[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long, device=self.device)
        columns = torch.arange(self.width + fed, device=self.device)[None]
        counts = torch.tensor([len(tokens) for tokens in new], device=self.device)[:, None]
        # Hidden: each row's left padding in the cache and the padding after its new tokens.
        mask = ((columns >= self.width - lengths[:, None]) & (columns < self.width + counts)).long()
        positions = lengths[:, None] + torch.arange(fed, device=self.device)
        # One unpadded row needs no mask or positions: the model's own causal defaults are the same
        # and cheaper (it skips building a padding mask every forward).
        extra = {} if self.batch == 1 else {"attention_mask": mask, "position_ids": positions}
        with torch.no_grad():
            out = self.net(input_ids=inputs, use_cache=True, **extra, **{self.cache_arg: self.cache})
        self.cache = out[self.cache_arg]
        self.forwards += 1
        old = self.lengths()
        self.ids = [row + list(tokens) for row, tokens in zip(self.ids, new)]
        self._realign(old, fed)
        return out.logits.float()

    def keep(self, lengths: list[int]) -> None:
        """Roll row b back to its first ``lengths[b]`` cached tokens."""
        old = self.lengths()
        if any(not 0 <= n <= o for n, o in zip(lengths, old)):
            raise ValueError(f"cannot keep {lengths} tokens of rows caching {old}")
        self.ids = [row[:n] for row, n in zip(self.ids, lengths)]
        self._realign(old, 0)

    def _realign(self, old: list[int], fed: int) -> None:
        """Rows cached ``old[b]`` tokens right-aligned in ``width`` columns, then ``fed`` columns were
        appended; move each row's first ``len(ids[b])`` tokens so that they end at the last column."""
        width = self.width + fed
        new = self.lengths()
        target = max(new)
        if self.batch == 1:
            # Batch 1 never pads: the row fills the cache, and rolling back is the cache's own crop.
            crop_cache(self.cache, target)
            self.width = target
            return
        offsets = [(self.width - o) - (target - n) for o, n in zip(old, new)]
        if all(off == offsets[0] for off in offsets) and offsets[0] >= 0:
            start = offsets[0]
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, start : start + target]
                layer.values = layer.values[:, :, start : start + target]
        else:
            source = (
                torch.arange(target, device=self.device)[None]
                + torch.tensor(offsets, device=self.device)[:, None]
            )
            pad = (
                torch.arange(target, device=self.device)[None]
                < torch.tensor([target - n for n in new], device=self.device)[:, None]
            )
            source = source.clamp(0, width - 1)
            pad = pad[:, None, :, None]
            for layer in self.cache.layers:
                index = source[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
                # Padding is zeroed: the attention mask hides it, and zeros can never turn into NaN.
                layer.keys = layer.keys.gather(2, index).masked_fill(pad, 0.0)
                layer.values = layer.values.gather(2, index).masked_fill(pad, 0.0)
        self.width = target
        self._trim()

    def _trim(self) -> None:
        """Drop leading columns that are padding in every row."""
        target = max(self.lengths(), default=0)
        if target < self.width and self.cache.layers:
            drop = self.width - target
            for layer in self.cache.layers:
                if layer.keys is not None and layer.keys.numel():
                    layer.keys, layer.values = layer.keys[:, :, drop:], layer.values[:, :, drop:]
        self.width = target
