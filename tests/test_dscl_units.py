"""DSCL / PBSD units: losses against hand-computed values, queue, ROI boxes, momentum encoder, DDP gather."""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.dscl import DSCLLoss, dscl_loss, dscl_weights, weighted_contrastive_nll
from ltzoo.losses.pbsd import pbsd_loss, roi_patch_features
from ltzoo.models.momentum import LabelledQueue, MomentumEncoder
from ltzoo.recipes.dscl import beta_to_alpha

pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py


def _lse(values):
    return math.log(sum(math.exp(v) for v in values))


# ----- DSCL loss -----------------------------------------------------------------------------------
def test_dscl_hand_computed():
    # tau = 0.5, alpha = 0.3. Anchors q1=(1,0) label 0, q2=(0,1) label 1; keys k1=(1,0), k2=(0.6,0.8);
    # queue u=(0.6,-0.8) label 0, v=(-1,0) label 1, w=(0,1) label 0.
    tau, alpha = 0.5, 0.3
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    keys = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    queue = torch.tensor([[0.6, -0.8], [-1.0, 0.0], [0.0, 1.0]])
    labels, queue_labels = torch.tensor([0, 1]), torch.tensor([0, 1, 0])
    # Anchor 1, candidates q2, k1 (own), k2, u, v, w with dot products 0, 1, 0.6, 0.6, -1, 0;
    # its other positives are u and w (label 0).
    s1 = [0 / tau, 1 / tau, 0.6 / tau, 0.6 / tau, -1 / tau, 0 / tau]
    lse1 = _lse(s1)
    loss1 = -(alpha * (1 / tau - lse1) + (1 - alpha) / 2 * ((0.6 / tau - lse1) + (0 / tau - lse1)))
    # Anchor 2, candidates q1, k1, k2 (own), u, v, w: 0, 0, 0.8, -0.8, 0, 1; other positive: v.
    s2 = [0, 0, 0.8 / tau, -0.8 / tau, 0, 1 / tau]
    lse2 = _lse(s2)
    loss2 = -(alpha * (0.8 / tau - lse2) + (1 - alpha) * (0 - lse2))
    got = dscl_loss(queries, keys, labels, queue, queue_labels, alpha=alpha, temperature=tau)
    assert got.item() == pytest.approx((loss1 + loss2) / 2, rel=1e-6)
    assert DSCLLoss(alpha, tau)(queries, keys, labels, queue, queue_labels).item() == pytest.approx(got.item())


def test_anchor_without_other_positives_uses_own_view_only():
    # Two anchors of different classes and an empty queue: no anchor has a positive besides its own key,
    # so alpha does not matter and each loss is -log p(own key).
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    keys = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    empty = torch.zeros(0, 2)
    got = dscl_loss(queries, keys, labels, empty, torch.zeros(0, dtype=torch.long), alpha=0.2, temperature=1.0)
    # Anchor 1: q2 0, k1 0.8 (own), k2 0 -> -(0.8 - lse); anchor 2: q1 0, k1 0.6, k2 1 (own).
    expected1 = -(0.8 - _lse([0, 0.8, 0]))
    expected2 = -(1.0 - _lse([0, 0.6, 1.0]))
    assert got.item() == pytest.approx((expected1 + expected2) / 2, rel=1e-6)


def _scl_by_loops(queries, keys, labels, queue, queue_labels, tau):
    """Plain SCL over {q-batch minus i} + k-batch + queue: mean over {own key} + P_i of -log p."""
    cands = torch.cat([queries, keys, queue]).double()
    cand_labels = torch.cat([labels, labels, queue_labels]).tolist()
    batch = queries.shape[0]
    total = 0.0
    for i in range(batch):
        logits = {t: float(queries[i].double() @ cands[t]) / tau for t in range(len(cands)) if t != i}
        lse = _lse(list(logits.values()))
        positives = [t for t in logits if cand_labels[t] == int(labels[i])]  # own key included
        total += -sum(logits[t] - lse for t in positives) / len(positives)
    return total / batch


def test_scl_alpha_reduces_to_scl():
    torch.manual_seed(0)
    queries = nn.functional.normalize(torch.randn(6, 5), dim=1)
    keys = nn.functional.normalize(torch.randn(6, 5), dim=1)
    queue = nn.functional.normalize(torch.randn(9, 5), dim=1)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    queue_labels = torch.tensor([0, 0, 1, 3, 2, 2, 0, 1, 3])
    expected = _scl_by_loops(queries, keys, labels, queue, queue_labels, 0.2)
    # alpha = 1 / (|P_i| + 1) per anchor, counted here by hand: other positives in q, k and queue.
    counts = []
    for i, y in enumerate(labels.tolist()):
        in_q = sum(1 for j, z in enumerate(labels.tolist()) if z == y and j != i)
        in_k = in_q  # every same-class key except the own one
        in_queue = sum(1 for z in queue_labels.tolist() if z == y)
        counts.append(in_q + in_k + in_queue)
    alpha = torch.tensor([1.0 / (c + 1) for c in counts])
    by_tensor = dscl_loss(queries, keys, labels, queue, queue_labels, alpha=alpha, temperature=0.2)
    by_name = dscl_loss(queries, keys, labels, queue, queue_labels, alpha="scl", temperature=0.2)
    assert by_tensor.item() == pytest.approx(expected, rel=1e-5)
    assert by_name.item() == pytest.approx(expected, rel=1e-5)


def _optimal_p_own(num_positives: int, alpha, num_negatives: int = 5) -> float:
    n = 1 + num_positives + num_negatives
    own = torch.zeros(1, n, dtype=torch.bool)
    own[0, 0] = True
    positives = torch.zeros(1, n, dtype=torch.bool)
    positives[0, 1 : 1 + num_positives] = True
    weights = dscl_weights(positives, own, alpha)
    logits = torch.zeros(1, n, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.5)
    candidates = torch.ones(1, n, dtype=torch.bool)
    for _ in range(1500):
        optimizer.zero_grad()
        weighted_contrastive_nll(logits, weights, candidates).backward()
        optimizer.step()
    return torch.softmax(logits.detach(), dim=1)[0, 0].item()


def test_optimum_p_own_is_alpha_for_every_class_size():
    for num_positives in (1, 4, 30):
        assert _optimal_p_own(num_positives, 0.25) == pytest.approx(0.25, abs=0.01)
    # SCL's optimum depends on the class size: 1 / (|P| + 1).
    assert _optimal_p_own(1, "scl") == pytest.approx(0.5, abs=0.01)
    assert _optimal_p_own(30, "scl") == pytest.approx(1 / 31, abs=0.01)


def _official_numbers(features, labels, batch, beta, tau):
    """The arithmetic of SY-Xuan/DSCL DSCLLoss.forward: own key weight 1, other positives beta/|P|,
    max-shifted logits, the anchor removed from the denominator, eps 1e-12, sum w log p / sum w."""
    sims = features[:batch] @ features.T / tau
    sims = sims - sims.max(dim=1, keepdim=True).values
    not_self = torch.ones_like(sims)
    not_self[torch.arange(batch), torch.arange(batch)] = 0
    mask = (labels[:batch].view(-1, 1) == labels.view(1, -1)).float() * not_self
    weights = torch.ones_like(mask) / (mask.sum(1, keepdim=True) - 1.0 + 1e-12) * beta
    weights[torch.arange(batch), torch.arange(batch) + batch] = 1.0
    log_prob = sims - torch.log((torch.exp(sims) * not_self).sum(1, keepdim=True) + 1e-12)
    return -((mask * log_prob * weights).sum(1) / (mask * weights).sum(1)).mean()


def test_beta_8_gives_the_official_numbers():
    assert beta_to_alpha(8.0) == pytest.approx(1 / 9)
    torch.manual_seed(1)
    batch, queue_size = 8, 16
    queries = nn.functional.normalize(torch.randn(batch, 6), dim=1)
    keys = nn.functional.normalize(torch.randn(batch, 6), dim=1)
    queue = nn.functional.normalize(torch.randn(queue_size, 6), dim=1)
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4])  # class 3 and 4 have no other positive in the batch
    queue_labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 5])
    features = torch.cat([queries, keys, queue])
    all_labels = torch.cat([labels, labels, queue_labels])
    official = _official_numbers(features, all_labels, batch, 8.0, 0.07)
    ours = dscl_loss(queries, keys, labels, queue, queue_labels, alpha=beta_to_alpha(8.0), temperature=0.07)
    assert ours.item() == pytest.approx(official.item(), rel=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 1.5, -0.1, "supcon"])
def test_bad_alpha(alpha):
    with pytest.raises(BadHyperParameterError, match="alpha"):
        DSCLLoss(alpha=alpha)


# ----- PBSD -----------------------------------------------------------------------------------------
def test_pbsd_hand_computed_and_target_detached():
    # tau = 1, one image, one patch: teacher (1,0), student (0,1), key (1,0), queue [(0,1)].
    teacher = torch.tensor([[[1.0, 0.0]]], requires_grad=True)
    student = torch.tensor([[[0.0, 1.0]]], requires_grad=True)
    keys, queue = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    loss = pbsd_loss(teacher, student, keys, queue, temperature=1.0)
    p = [math.e / (math.e + 1), 1 / (math.e + 1)]  # teacher logits [1, 0]
    log_q = [0 - math.log(1 + math.e), 1 - math.log(1 + math.e)]  # student logits [0, 1]
    assert loss.item() == pytest.approx(-(p[0] * log_q[0] + p[1] * log_q[1]), rel=1e-6)
    loss.backward()
    assert teacher.grad is None  # the target is detached: nothing flows back to the teacher
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_roi_boxes_map_to_the_right_cells():
    # A 7x7 map of a 28-px view (stride 4): channel 0 holds the column index, channel 1 the row index,
    # so the ROI average is the box centre in cell coordinates. Image 1 adds 100 to tell the maps apart.
    cols = torch.arange(7.0).view(1, 7).expand(7, 7)
    rows = torch.arange(7.0).view(7, 1).expand(7, 7)
    fmap = torch.stack([torch.stack([cols, rows]), torch.stack([cols + 100, rows + 100])])
    boxes = torch.tensor(
        [
            [[8.0, 4.0, 16.0, 8.0], [4.0, 8.0, 24.0, 20.0]],  # cells x 2-3, y 1; cells x 1-5, y 2-4
            [[20.0, 12.0, 24.0, 16.0], [8.0, 4.0, 16.0, 8.0]],  # cell x 5, y 3; cells x 2-3, y 1
        ]
    )
    pooled = roi_patch_features(fmap, boxes, image_size=28)
    expected = torch.tensor([[[2.5, 1.0], [3.0, 3.0]], [[105.0, 103.0], [102.5, 101.0]]])
    assert pooled.shape == (2, 2, 2)
    assert torch.allclose(pooled, expected, atol=1e-5)


# ----- queue ----------------------------------------------------------------------------------------
def test_queue_fills_then_wraps():
    queue = LabelledQueue(size=5, dim=1)
    feats, labels = queue.contents()
    assert feats.shape == (0, 1) and labels.numel() == 0  # empty queue: nothing fake is used
    queue.enqueue(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1, 2, 3]))
    feats, labels = queue.contents()
    assert feats.flatten().tolist() == [1.0, 2.0, 3.0] and labels.tolist() == [1, 2, 3]
    queue.enqueue(torch.tensor([[4.0], [5.0], [6.0]]), torch.tensor([4, 5, 6]))
    feats, labels = queue.contents()
    # slots 3, 4 then 0: the oldest entry (1) is overwritten by 6
    assert feats.flatten().tolist() == [6.0, 2.0, 3.0, 4.0, 5.0]
    assert labels.tolist() == [6, 2, 3, 4, 5]
    assert int(queue.ptr) == 1 and int(queue.filled) == 5
    queue.enqueue(torch.arange(7.0, 14.0).view(7, 1), torch.arange(7, 14))  # more than the queue holds
    feats, labels = queue.contents()
    # the newest 5 (9..13) land at slots 1,2,3,4,0
    assert labels.tolist() == [13, 9, 10, 11, 12] and int(queue.ptr) == 1
    assert queue.features.requires_grad is False


def test_queue_contents_are_a_copy():
    queue = LabelledQueue(size=4, dim=2)
    queue.enqueue(torch.ones(2, 2), torch.tensor([0, 1]))
    feats, _ = queue.contents()
    queue.enqueue(torch.zeros(2, 2), torch.tensor([0, 1]))
    assert feats.sum().item() == 4.0


# ----- momentum encoder -----------------------------------------------------------------------------
def test_momentum_update_and_no_gradients():
    online = nn.Linear(3, 2)
    key = MomentumEncoder(online, momentum=0.75)
    initial = key.encoder.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    key.update(online)
    assert torch.allclose(key.encoder.weight, 0.75 * initial + 0.25 * online.weight)
    out = key(torch.randn(4, 3))
    assert not out.requires_grad
    assert all(not p.requires_grad for p in key.parameters())
    loss = online(torch.randn(4, 3)).sum() + out.sum()
    loss.backward()
    assert all(p.grad is None for p in key.parameters())


def test_shuffled_bn_single_process():
    torch.manual_seed(0)
    images = torch.randn(8, 3)
    # Without BN the shuffle must be undone exactly.
    linear = MomentumEncoder(nn.Linear(3, 4), bn_splits=2)
    assert torch.allclose(linear(images), linear.encoder(images), atol=1e-6)
    # With BN, one split equals a plain train-mode forward; two splits use per-chunk statistics.
    bn_net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    one = MomentumEncoder(bn_net, bn_splits=1)
    two = MomentumEncoder(bn_net, bn_splits=2)
    reference = MomentumEncoder(bn_net).encoder(images)
    assert torch.allclose(one(images), reference, atol=1e-5)
    assert not torch.allclose(two(images), reference, atol=1e-3)
    with pytest.raises(BadHyperParameterError):
        MomentumEncoder(bn_net, momentum=1.0)


# ----- DDP (2 gloo processes) -------------------------------------------------------------------------
def _ddp_worker(rank: int, world: int, store: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.manual_seed(123)  # same weights on both ranks (as DDP would broadcast them)
        queue = LabelledQueue(size=8, dim=2)
        feats = torch.tensor([[10.0 * rank, 1.0], [10.0 * rank + 1, 1.0]])
        queue.enqueue(feats, torch.tensor([rank, rank]))
        encoder = MomentumEncoder(nn.Linear(2, 3))
        images = torch.randn(4, 2) + rank
        keys = encoder(images)
        torch.save(
            {"queue": queue.contents(), "ptr": int(queue.ptr), "keys": keys, "local": encoder.encoder(images)},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_ddp_queue_gathers_and_keys_unshuffle():
    with tempfile.TemporaryDirectory() as tmp:
        # fork: the workers need nothing re-imported, which keeps this test a few seconds long
        mp.start_processes(
            _ddp_worker, args=(2, os.path.join(tmp, "store"), tmp), nprocs=2, join=True, start_method="fork"
        )
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(2)]
    for result in results:
        feats, labels = result["queue"]
        # both ranks hold every rank's keys, in rank order
        assert feats[:, 0].tolist() == [0.0, 1.0, 10.0, 11.0]
        assert labels.tolist() == [0, 0, 1, 1]
        assert result["ptr"] == 4
        # the cross-rank shuffle is undone: each rank gets the keys of its own images back
        assert torch.allclose(result["keys"], result["local"], atol=1e-6)
