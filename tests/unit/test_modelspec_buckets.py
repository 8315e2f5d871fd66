import pytest
import torch

from modelspec.buckets import bucket_for, parse_buckets, run_bucketed


def test_parse_buckets_sorts_and_dedupes() -> None:
    assert parse_buckets("8, 1,4,4") == (1, 4, 8)


@pytest.mark.parametrize("text", ["", "0,1", "a,b", "-1"])
def test_parse_buckets_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="batch buckets"):
        parse_buckets(text)


def test_bucket_for_picks_the_smallest_that_fits() -> None:
    assert [bucket_for(n, (1, 4, 8)) for n in (1, 2, 4, 5, 8)] == [1, 4, 4, 8, 8]
    with pytest.raises(ValueError, match="exceed the largest bucket 8"):
        bucket_for(9, (1, 4, 8))


def test_run_bucketed_pads_splits_and_slices_in_order() -> None:
    seen: list[int] = []

    def graph(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x[:, 0] * 2

    x = torch.arange(11, dtype=torch.float32).unsqueeze(1)
    out = run_bucketed(graph, x, (1, 2, 4))
    assert seen == [4, 4, 4]  # 4 + 4 + 3 padded to 4
    assert out.tolist() == [2.0 * i for i in range(11)]


def test_run_bucketed_checks_the_result_count() -> None:
    with pytest.raises(RuntimeError, match="returned 1 rows for a batch of 2"):
        run_bucketed(lambda x: x[:1, 0], torch.zeros(2, 3), (2,))
