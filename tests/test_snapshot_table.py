"""benchmarks/snapshot_table.py: which snapshots it picks and how it averages over seeds."""

import pytest

from benchmarks import snapshot_table as st


def test_it_picks_the_snapshots_at_multiples_of_every(tmp_path):
    for kimg in ('000000', '000004', '000008', '000016', '000016.128'):
        (tmp_path / f'network-snapshot-{kimg}.pkl').write_bytes(b'')
    (tmp_path / 'log.txt').write_text('')
    assert [k for _, k in st.snapshots(str(tmp_path), 8)] == [0, 8, 16]
    assert [k for _, k in st.snapshots(str(tmp_path), 0)] == [0, 4, 8, 16, 16.128]
    one = tmp_path / 'network-snapshot-000004.pkl'
    assert st.snapshots(str(one), 8) == [(str(one), None)]
    with pytest.raises(Exception, match='neither'):
        st.snapshots(str(tmp_path / 'missing'), 8)


def test_rows_hold_the_mean_and_half_range_over_seeds():
    summary = st.summarize([dict(attr_tv=0.031, pose_err=2.0), dict(attr_tv=0.039, pose_err=2.2),
                            dict(attr_tv=0.032)])
    assert set(summary) == {'attr_tv'}  # pose_err is missing for one seed
    assert summary['attr_tv'] == pytest.approx((0.034, 0.004))
    assert st.format_row('run', 8.0, summary, ['attr_tv', 'pose_err']) == '| run | 8 | 0.0340 ± 0.0040 | — |'
