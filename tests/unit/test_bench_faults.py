"""The accounting of bench/faults (tests/support/fault_figures.py): gaps, time to a whole cluster, and
the verdict on the targets (0 lost, nr never hung, 0 failed calls during nr's own change)."""

from __future__ import annotations

import pytest

from tests.support.fault_figures import (
    Figures,
    NrCall,
    cluster_whole,
    longest_gap,
    not_whole,
    time_to_report,
    time_to_whole,
)

INFO_OK = (
    "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\n"
)
INFO_PFAIL = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10923\r\ncluster_slots_pfail:5461\r\n"
INFO_FAIL = "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10923\r\ncluster_slots_fail:5461\r\n"


def test_whole_needs_state_ok_and_every_slot_on_a_healthy_master() -> None:
    assert cluster_whole(INFO_OK)
    assert not cluster_whole(INFO_PFAIL)  # state still ok while a master is only suspected
    assert not cluster_whole(INFO_FAIL)
    assert not cluster_whole("")
    assert not cluster_whole("cluster_state:ok\r\ncluster_slots_ok:garbage\r\n")


def test_not_whole_names_failed_suspected_and_disconnected_nodes() -> None:
    nodes = "\n".join(
        [
            "a 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460",
            "b 10.0.0.2:7000@17000 master,fail - 1 1 2 disconnected",
            "c 10.0.0.3:7000@17000 master,fail? - 1 1 3 connected 10923-16383",
            "d 10.0.0.3:7003@17003 slave a 0 1 1 disconnected",
            "e 10.0.0.2:7003@17003 master - 0 1 4 connected 5461-10922",
        ]
    )
    assert not_whole(nodes) == ["10.0.0.2:7000", "10.0.0.3:7000", "10.0.0.3:7003"]
    assert not_whole("a 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-16383") == []


def test_longest_gap_counts_the_edges_and_ignores_calls_outside() -> None:
    assert longest_gap([1.0, 2.0, 8.5, 9.0], start=0.0, end=10.0) == pytest.approx(6.5)
    assert longest_gap([], start=3.0, end=10.0) == pytest.approx(7.0)  # no answer at all
    assert longest_gap([1.0, 2.0, 3.0], start=0.0, end=3.5) == pytest.approx(1.0)
    assert longest_gap([-5.0, 20.0], start=0.0, end=4.0) == pytest.approx(4.0)
    assert longest_gap([5.0, 1.0, 3.0], start=0.0, end=6.0) == pytest.approx(2.0)  # unsorted input
    assert longest_gap([1.0], start=2.0, end=2.0) == 0.0


def test_time_to_whole_is_the_first_ok_after_the_last_bad_sample() -> None:
    samples = [
        (9.0, False),
        (10.0, True),
        (11.0, False),
        (12.0, False),
        (13.5, True),
        (14.0, False),
        (15.0, True),
    ]
    assert time_to_whole(samples, fault_at=10.0) == pytest.approx(5.0)
    assert (
        time_to_whole([(9.0, False), (10.5, True), (11.0, True)], fault_at=10.0) == 0.0
    )  # before: not counted
    assert time_to_whole([(10.5, True), (11.0, False)], fault_at=10.0) is None  # still bad at the end
    assert time_to_whole([(9.0, True)], fault_at=10.0) is None  # nothing seen after the fault


def figures(**changes: object) -> Figures:
    base: dict[str, object] = dict(
        name="kill", writes_acked=100, writes_failed=3, reads_ok=200, reads_failed=2, write_gap=6.0,
        read_gap=5.5, whole_after=7.25, keys_lost=0, keys=10000, acked_lost=0,
        nr_calls=(NrCall("nr check redis", 1, 4.0),),
    )  # fmt: skip
    return Figures(**{**base, **changes})  # type: ignore[arg-type]


def test_targets_zero_lost_no_hang_and_no_failed_call_in_nrs_own_change() -> None:
    assert figures().target_met(15)  # failed calls during a host fault are reported, not a miss
    assert not figures(acked_lost=1).target_met(15)
    assert not figures(keys_lost=1).target_met(15)
    assert not figures(nr_calls=(NrCall("nr run redis", None, 600.0),)).target_met(15)
    assert not figures(own_change=True).target_met(15)
    assert figures(own_change=True, writes_failed=0, reads_failed=0).target_met(15)


def test_nr_may_wait_on_a_lost_host_at_most_the_keepalive_window() -> None:
    assert figures(nr_calls=(NrCall("nr check redis", 1, 26.0, reported_after=15.0),)).target_met(15)
    assert not figures(nr_calls=(NrCall("nr check redis", 1, 28.0, reported_after=15.5),)).target_met(15)
    assert figures(nr_calls=(NrCall("nr run redis", 0, 40.0),)).target_met(15)  # no host lost: no bound


def test_time_to_report_runs_from_the_failed_steps_start_to_the_hosts_cross() -> None:
    out = [
        (0.5, "▸ redis.check  h1 h2 h3"),
        (1.0, "  ✓ h1 ok"),
        (1.5, "  ✓ h3 ok"),
        (2.0, "▸ redis.install  h1 h2 h3"),
        (2.2, "  ✓ h1 ok"),
        (12.3, "  ✗ h3 cannot connect to 10.0.0.3:22: timed out"),
        (13.0, "  ✗ h3 again"),
    ]
    assert time_to_report(out, "h3") == pytest.approx(10.3)
    assert time_to_report(out, "h1") is None  # never failed
    assert time_to_report([(1.0, "  ✗ h3 lost")], "h3") is None  # no step seen: no start to count from
    assert time_to_report([(0.0, "▸ s  h30"), (4.0, "  ✗ h30 lost")], "h3") is None  # another host


def test_lines_give_every_figure() -> None:
    text = "\n".join(
        figures(
            whole_after=None,
            nr_calls=(
                NrCall("nr run redis", 1, 31.0, 10.0, "FAILED: nrflab3 lost", reported_after=21.0),
                NrCall("nr check", None, 600),
            ),
        )
        .lines(window=15)
    )  # fmt: skip
    for part in (
        "100 acked, 3 failed; longest gap 6.0 s",
        "200 ok, 2 failed; longest gap 5.5 s",
        "never (still not ok at the end)",
        "0 of 10000 loaded keys, 0 of 100 acknowledged writes",
        "nr run redis -> exit 1 in 31.0 s (healthy lab: 10.0 s); host reported lost 21.0 s into its step "
        "(window 15 s, OVER): FAILED: nrflab3 lost",
        "nr check -> killed at the bench's bound (hung) in 600.0 s",
    ):
        assert part in text
    assert "7.2 s after the fault" in "\n".join(figures().lines(window=15))
