"""CoOp prompt learner with class-specific context (METHOD §2)."""

from __future__ import annotations

import torch
from torch import nn

from anomalyclip.tokenizer import class_prompts, tokenize


class PromptLearner(nn.Module):
    """Learned context `(C, n_ctx, W)` between the frozen SOT and class-name token embeddings."""

    def __init__(self, class_names: list[str], n_ctx: int, token_embedding: nn.Embedding, context_length: int = 77):
        super().__init__()
        ids = tokenize(class_prompts(class_names, n_ctx), context_length)  # (C, 77)
        width = token_embedding.weight.shape[1]
        with torch.no_grad():
            emb = token_embedding(ids.to(token_embedding.weight.device)).float()  # (C, 77, W)
        self.ctx = nn.Parameter(torch.randn(len(class_names), n_ctx, width) * 0.02)
        self.register_buffer("token_prefix", emb[:, :1].clone())  # SOT
        self.register_buffer("token_suffix", emb[:, 1 + n_ctx :].clone())  # name, ".", EOT, padding
        # EOT = argmax of the ids; derived from the class names, so not stored.
        self.register_buffer("eot_index", ids.argmax(dim=-1), persistent=False)

    def forward(self) -> torch.Tensor:
        return torch.cat([self.token_prefix, self.ctx, self.token_suffix], dim=1)  # (C, 77, W)
