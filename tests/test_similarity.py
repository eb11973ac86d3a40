"""classaware.similarity: matrices against loops written from the definitions."""

from __future__ import annotations

import math

import pytest
import torch

from classaware import similarity
from classaware.functional import simloss
from classaware.functional.logit import check_similarity


@pytest.mark.parametrize("c, r", [(1, 0.5), (4, 0.5), (6, 0.9), (5, 0.0)])
def test_ordinal_matches_definition(c, r):
    s = similarity.ordinal(c, r)
    assert s.shape == (c, c) and s.dtype == torch.float64
    for i in range(c):
        for j in range(c):
            assert s[i, j].item() == pytest.approx(r ** abs(i - j), rel=1e-6)
    check_similarity(s)


def test_ordinal_zero_factor_is_identity_so_simloss_is_ce():
    assert torch.equal(similarity.ordinal(4, 0.0), torch.eye(4))
    x, t = torch.randn(6, 4), torch.randint(0, 4, (6,))
    torch.testing.assert_close(
        simloss(x, t, similarity.ordinal(4, 0.0)), torch.nn.functional.cross_entropy(x, t)
    )


@pytest.mark.parametrize("r, exc", [(1.0, ValueError), (-0.1, ValueError), (1.5, ValueError),
                                    (float("nan"), ValueError), (True, TypeError), ("0.5", TypeError)])
def test_ordinal_bad_reduction_factor(r, exc):
    with pytest.raises(exc, match="reduction_factor"):
        similarity.ordinal(4, r)


@pytest.mark.parametrize("c, exc", [(0, ValueError), (-3, ValueError), (2.0, TypeError)])
def test_ordinal_bad_num_classes(c, exc):
    with pytest.raises(exc, match="num_classes"):
        similarity.ordinal(c, 0.5)


def test_from_groups_matches_definition():
    groups = [[0, 3], (1, 4, 5)]
    s = similarity.from_groups(groups, 7, within=0.25)
    group_of = {0: 0, 3: 0, 1: 1, 4: 1, 5: 1}
    for i in range(7):
        for j in range(7):
            if i == j:
                want = 1.0
            elif i in group_of and group_of.get(j) == group_of[i]:
                want = 0.25
            else:
                want = 0.0
            assert s[i, j].item() == want, (i, j)
    check_similarity(s)


def test_from_groups_accepts_names_with_class_names():
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt"]
    by_name = similarity.from_groups([["Shirt", "T-shirt/top"], ["Pullover", "Coat"]], 7,
                                     class_names=names)
    by_index = similarity.from_groups([[6, 0], [2, 4]], 7)
    assert torch.equal(by_name, by_index)
    with pytest.raises(TypeError, match="class_names"):
        similarity.from_groups([["Shirt", "Coat"]], 7)
    with pytest.raises(ValueError, match="Hat"):
        similarity.from_groups([["Shirt", "Hat"]], 7, class_names=names)
    with pytest.raises(ValueError, match="class_names"):
        similarity.from_groups([[0, 1]], 7, class_names=names[:3])


def test_from_groups_empty_and_singletons_give_identity():
    assert torch.equal(similarity.from_groups([], 3), torch.eye(3))
    assert torch.equal(similarity.from_groups([[1]], 3, within=1.0), torch.eye(3))


@pytest.mark.parametrize(
    "groups, within, exc, match",
    [
        ([[0, 1], [1, 2]], 0.5, ValueError, "overlap"),
        ([[0, 1, 1]], 0.5, ValueError, "overlap"),
        ([[0, 7]], 0.5, ValueError, "outside"),
        ([[-1, 2]], 0.5, ValueError, "outside"),
        ([[0, 1.0]], 0.5, TypeError, "groups"),
        ([[0, True]], 0.5, TypeError, "groups"),
        ([0, 1], 0.5, TypeError, "groups"),
        ("01", 0.5, TypeError, "groups"),
        ([[0, 1]], 1.5, ValueError, "within"),
        ([[0, 1]], -0.5, ValueError, "within"),
        ([[0, 1]], None, TypeError, "within"),
    ],
)
def test_from_groups_bad_input(groups, within, exc, match):
    with pytest.raises(exc, match=match):
        similarity.from_groups(groups, 4, within=within)


def test_from_embeddings_matches_definition():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(6, 4, generator=g)
    b = 0.2
    s = similarity.from_embeddings(emb, lower_bound=b)
    rows = emb.tolist()
    for i in range(6):
        for j in range(6):
            if i == j:
                want = 1.0
            else:
                dot = sum(a * c for a, c in zip(rows[i], rows[j]))
                cos = dot / (math.sqrt(sum(a * a for a in rows[i])) * math.sqrt(sum(c * c for c in rows[j])))
                want = max(0.0, (cos - b) / (1 - b))
            assert s[i, j].item() == pytest.approx(want, abs=1e-6), (i, j)
    assert (s == 0).any()  # some negatives were clipped
    check_similarity(s)


def test_from_embeddings_scale_invariant_and_parallel_rows():
    emb = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    s = similarity.from_embeddings(emb.double().numpy(), lower_bound=0.5)
    assert s[0, 1].item() == pytest.approx(1.0)
    assert s[0, 2].item() == 0.0 and s[0, 3].item() == 0.0
    assert torch.equal(s, s.T)


@pytest.mark.parametrize(
    "emb, b, exc, match",
    [
        (torch.randn(3, 2), 1.0, ValueError, "lower_bound"),
        (torch.randn(3, 2), -1.5, ValueError, "lower_bound"),
        (torch.randn(3, 2), "0.5", TypeError, "lower_bound"),
        (torch.randn(3), 0.5, ValueError, "embeddings"),
        (torch.tensor([[1.0, 0.0], [0.0, 0.0]]), 0.5, ValueError, "embeddings"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 0.5, ValueError, "embeddings"),
    ],
)
def test_from_embeddings_bad_input(emb, b, exc, match):
    with pytest.raises(exc, match=match):
        similarity.from_embeddings(emb, lower_bound=b)
