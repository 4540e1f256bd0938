"""Sample order read from sample names (proteus.io.run_order), named for what the names show of it (plate position,
or run order only with a date stamp or a word of acquisition), and checked against the groupings like any technical
column (proteus.confounding), on the NAFLD plasma names and the UPS1 replicate names."""

from __future__ import annotations

import pandas as pd
import pytest

from proteus.confounding import contrast_checks
from proteus.datasets import shared_dataset_dir
from proteus.io import load_study
from proteus.io.run_order import NAME_ORDER, PLATE_POSITION, RUN_DATE, RUN_ORDER, run_order_from_names
from proteus.profile import profile_study


@pytest.fixture(scope="module")
def nafld(nafld_dir):
    return load_study(nafld_dir)


def test_running_number_beside_plate_wells_is_a_technical_plate_position(nafld):
    names = list(nafld.modalities["proteomics"].obs_names)
    # plate-well names (1_31_C6) say where a sample sat on the plate, nothing verified of when it was measured
    assert RUN_ORDER not in nafld.clinical.columns
    order = nafld.clinical[PLATE_POSITION].reindex(names)
    assert order.notna().all() and sorted(order) == list(range(1, len(names) + 1))
    # the rank follows the number the names share a position for (the project prefix and the plate well do not qualify)
    numbers = pd.Series([int(n.split("_")[1]) for n in names], index=names)
    assert (order.rank() == numbers.rank()).all()
    v = profile_study(nafld).variable(PLATE_POSITION)
    assert v is not None and v.role == "technical" and v.kind == "continuous"
    assert any(PLATE_POSITION in note for note in nafld.sample_notes)


def test_a_grouping_measured_in_its_own_stretch_of_the_run_cannot_be_separated_from_it(nafld):
    clin = nafld.clinical
    levels = clin["disease"].value_counts()
    checked = []
    for case in levels.index:
        for control in levels.index:
            if case == control:
                continue
            a, b = clin.loc[clin["disease"] == case, PLATE_POSITION], clin.loc[clin["disease"] == control, PLATE_POSITION]
            c = contrast_checks(clin, "disease", [case], [control], [(PLATE_POSITION, "technical", True)])[0]
            blocks = a.max() < b.min() or b.max() < a.min()
            assert (c.decision == "cannot be separated") == blocks, (case, control, c)
            checked.append(blocks)
    assert any(checked)  # this cohort was measured in blocks of diagnosis


def test_names_without_a_running_number_or_with_a_technical_column_add_nothing():
    d = shared_dataset_dir("ramus2016-ups1-maxquant")
    if d is None:
        pytest.skip("shared dataset ramus2016-ups1-maxquant absent")
    ups = load_study(d / "50vs5")  # replicate numbers restart in each group; a replicate column exists
    assert RUN_ORDER not in ups.clinical.columns
    assert run_order_from_names(list(ups.clinical.index)).shape[1] == 0
    scattered = [f"Run-{n:05d}" for n in range(3, 900, 41)]  # numbers too far apart for a running count
    assert run_order_from_names(scattered).shape[1] == 0
    patients = [f"Patient_{n:02d}" for n in range(1, 30)]  # a numbered id, nothing says acquisition
    assert run_order_from_names(patients).shape[1] == 0
    assert list(run_order_from_names([f"Run{n:02d}_{p}" for n, p in zip(range(1, 30), patients)])[RUN_ORDER]) == list(range(1, 30))
    stamped = [f"2019031{d}_QE_S{i:03d}" for i, d in zip(range(1, 9), [2, 2, 2, 2, 3, 3, 3, 3])]
    found = run_order_from_names(stamped)
    assert list(found[RUN_ORDER]) == list(range(1, 9))
    assert found[RUN_DATE].nunique() == 2 and found[RUN_DATE].iloc[0] == "2019-03-12"
    # a running number beside plate wells or a plate word is a plate position, beside a batch word a name order
    wells = [f"P1_S{i:02d}_{'ABCDEFGH'[i % 8]}{i // 8 + 1}" for i in range(1, 30)]
    assert list(run_order_from_names(wells).columns) == [PLATE_POSITION]
    assert list(run_order_from_names([f"Plate2_S{i:02d}" for i in range(1, 30)]).columns) == [PLATE_POSITION]
    assert list(run_order_from_names([f"Batch2_S{i:02d}" for i in range(1, 30)]).columns) == [NAME_ORDER]
    # the same wells with an injection word are the run order
    assert list(run_order_from_names([f"Injection_{w}" for w in wells]).columns) == [RUN_ORDER]
