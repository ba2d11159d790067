import torch

from anomalyclip.model.grid import eval_grid_index
from anomalyclip.config import LossConfig
from anomalyclip.losses import training_losses
from anomalyclip.model import AnomalyCLIP
from anomalyclip.tokenizer import class_prompts, tokenize

from conftest import tiny_model_config


def make_model(**kw):
    torch.manual_seed(0)
    m = AnomalyCLIP(tiny_model_config(**kw))
    m.centroid.normal_(0, 0.3)
    return m


def test_text_features_truncated_equal_full_and_transformers_forward():
    m = make_model()
    m.eval()
    full = m.text_encoder(m.prompt_learner(), m.prompt_learner.eot_index, truncate=False)
    short = m.text_encoder(m.prompt_learner(), m.prompt_learner.eot_index, truncate=True)
    assert int(m.prompt_learner.eot_index.max()) + 1 < 77
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-5)
    # With the context set to the embedding of "X", the prompts are plain token embeddings, so
    # transformers' own forward on the token ids must give the same features.
    ids = tokenize(class_prompts(m.cfg.class_names, m.cfg.n_ctx))
    with torch.no_grad():
        m.prompt_learner.ctx.copy_(m.text_encoder.token_embedding(ids[:, 1 : 1 + m.cfg.n_ctx]))
        ours = m.text_features()
        ref = m.text_encoder.clip(input_ids=ids).text_embeds
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_only_prompt_context_text_projection_and_temporal_model_train():
    m = make_model()
    m.train()
    x = torch.randn(4, 512, 512)
    out = m(x)
    y = torch.tensor([0, 4, 3, 3])
    training_losses(out, y, 3, LossConfig(), 32)["loss"].backward()
    with_grad = {n for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert with_grad == trainable
    assert "prompt_learner.ctx" in trainable and "text_encoder.clip.text_projection.weight" in trainable
    assert all(n.startswith("temporal.") for n in trainable - {"prompt_learner.ctx", "text_encoder.clip.text_projection.weight"})
    assert not any(n.startswith("text_encoder.clip.text_model") for n in trainable)


def naive_score(m, x):
    """Reference test mode: wrap-pad to T', split '(n s l) -> s n l' by loops, score, un-split, cut."""
    t = x.shape[0]
    s = -(-t // 512)
    padded = x[torch.tensor([j % t for j in range(s * 512)])]
    centred = padded - m.centroid
    text = m.text_features()
    sim = m.selector(centred, m.selector.directions(text, m.centroid))
    inp = m.temporal_input(centred, sim)
    grids = torch.zeros(s, 512, inp.shape[1])
    where = {}
    pos = 0
    for seg in range(32):
        for g in range(s):
            for f in range(16):
                grids[g, seg * 16 + f] = inp[pos]
                where[pos] = (g, seg * 16 + f)
                pos += 1
    out = m.temporal(grids)
    p = torch.stack([out[where[j]] for j in range(s * 512)])[:t]
    return p, sim[:t]


def test_score_videos_matches_naive_padding_and_interleave():
    for concat in (False, True):
        m = make_model(concat_features=concat)
        m.eval()
        with torch.no_grad():
            m.selector.bn.running_mean.normal_()
            m.selector.bn.running_var.uniform_(0.5, 2)
            videos = [torch.randn(300, 512), torch.randn(1300, 512)]  # s = 1 and s = 3
            outs = m.score_videos(videos)
            for x, (p, probs) in zip(videos, outs):
                p_ref, sim = naive_score(m, x)
                torch.testing.assert_close(p, p_ref, atol=1e-5, rtol=1e-4)
                abn = torch.softmax(sim, 1) * p_ref[:, None]
                probs_ref = torch.cat([abn[:, :3], 1 - p_ref[:, None], abn[:, 3:]], 1)
                torch.testing.assert_close(probs, probs_ref, atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(probs.sum(1), torch.ones(len(x)), atol=1e-5, rtol=0)


def test_grid_positions_cover_padded_video_once():
    for t in (1, 511, 512, 513, 2000):
        idx = eval_grid_index(t)
        assert torch.equal(idx.flatten().sort().values, torch.arange(idx.numel()))


def test_videos_grouped_by_padded_frame_budget():
    from anomalyclip.model.grid import group_by_budget, padded_length

    assert [padded_length(t, 512) for t in (1, 512, 513, 1500)] == [512, 512, 1024, 1536]
    lengths = [100, 600, 512, 2000, 10, 10]  # padded 512, 1024, 512, 2048, 512, 512
    groups = group_by_budget(lengths, 1536, 512)
    assert groups == [[0, 1], [2], [3], [4, 5]]  # a video over the budget goes alone
    assert sum(groups, []) == list(range(len(lengths)))
