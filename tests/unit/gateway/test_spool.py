"""The spool's state machine on a real SQLite file and real instance files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.spool import Spool, SpoolFull


def make_spool(tmp_path: Path, max_study_bytes: int = 10_000, quota: int = 100_000) -> Spool:
    return Spool(tmp_path / "spool", max_study_bytes, quota)


def test_duplicate_instances_are_stored_once(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    first = spool.store_instance("DUET", "1.2.3", "1.2.3.4", b"x" * 100, "L", "CC")
    again = spool.store_instance("DUET", "1.2.3", "1.2.3.4", b"x" * 100, "L", "CC")
    assert first.stored and not again.stored
    assert first.study_id == again.study_id
    (instance,) = spool.instances(first.study_id)
    assert instance.path.read_bytes() == b"x" * 100
    assert spool.used_bytes() == 100


def test_studies_are_grouped_by_called_ae_and_study_uid(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    a = spool.store_instance("DUET", "1.2.3", "1.1", b"a")
    b = spool.store_instance("OTHER", "1.2.3", "1.2", b"b")
    c = spool.store_instance("DUET", "1.2.3", "1.3", b"c")
    assert a.study_id == c.study_id != b.study_id


def test_study_size_limit_and_quota_refuse_without_storing(tmp_path: Path) -> None:
    spool = make_spool(tmp_path, max_study_bytes=150, quota=250)
    spool.store_instance("DUET", "1", "1.1", b"x" * 100)
    with pytest.raises(SpoolFull, match="study size limit"):
        spool.store_instance("DUET", "1", "1.2", b"x" * 100)
    spool.store_instance("DUET", "2", "2.1", b"x" * 100)
    with pytest.raises(SpoolFull, match="quota"):
        spool.store_instance("DUET", "3", "3.1", b"x" * 100)
    assert spool.used_bytes() == 200
    assert [s.study_uid for s in spool.studies()] == ["1", "2"]


def test_state_survives_reopening(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    received = spool.store_instance("DUET", "1", "1.1", b"data")
    assert spool.complete(received.study_id, 1)
    spool.close()
    reopened = make_spool(tmp_path)
    study = reopened.study(received.study_id)
    assert study is not None and study.state == "pending"
    assert reopened.instances(study.id)[0].path.read_bytes() == b"data"


def test_late_instance_reopens_the_study_and_a_stale_result_is_dropped(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    study_id = spool.store_instance("DUET", "1", "1.1", b"a").study_id
    assert spool.complete(study_id, 1)
    late = spool.store_instance("DUET", "1", "1.2", b"b")
    assert late.reopened
    study = spool.study(study_id)
    assert study.state == "receiving" and study.generation == 2
    # The dispatch of generation 1 finishes after the late instance: its result is not kept.
    assert not spool.store_result(study_id, 1, {"sr": ("9.9", b"sr")}, ["PACS@h:1"])
    assert spool.exports(study_id) == []


def test_exports_deliver_then_settle_the_study(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    study_id = spool.store_instance("DUET", "1", "1.1", b"a").study_id
    spool.complete(study_id, 1)
    assert spool.store_result(study_id, 1, {"sr": ("9.9", b"sr-bytes")}, ["PACS@h:1", "http://x/dicom-web"])
    first, second = spool.due_exports(now=1e12)
    assert first.path.read_bytes() == b"sr-bytes" and first.sop_uid == second.sop_uid == "9.9"
    spool.export_delivered(first.id)
    assert spool.study(study_id).state == "dispatched"
    assert not spool.export_retry(second.id, 0.0, "down", max_attempts=2)
    assert spool.export_retry(second.id, 0.0, "down", max_attempts=2)
    assert spool.study(study_id).state == "dead_letter"
    assert spool.retry(study_id) == "dispatched"
    (again,) = spool.due_exports(now=1e12)
    assert again.sop_uid == "9.9"
    spool.export_delivered(again.id)
    assert spool.study(study_id).state == "exported"


def test_operator_retry_of_a_failed_study(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    study_id = spool.store_instance("DUET", "1", "1.1", b"a").study_id
    spool.complete(study_id, 1)
    assert spool.dispatch_failed(study_id, 1, "422: not a mammogram")
    assert spool.study(study_id).last_error == "422: not a mammogram"
    assert spool.retry(study_id) == "pending"
    assert spool.retry(study_id) is None


def test_exported_studies_are_purged_after_retention(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    study_id = spool.store_instance("DUET", "1", "1.1", b"a").study_id
    spool.complete(study_id, 1)
    spool.store_result(study_id, 1, {"sr": ("9.9", b"sr")}, [])
    kept = spool.store_instance("DUET", "2", "2.1", b"b").study_id
    instance_file = spool.instances(study_id)[0].path
    assert spool.purge_exported(older_than=0) == 0
    assert spool.purge_exported(older_than=1e12) == 1
    assert spool.study(study_id) is None and not instance_file.exists()
    assert spool.study(kept) is not None
    assert spool.used_bytes() == 1


def test_a_received_file_is_moved_into_the_spool(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    incoming = spool.incoming / "received.dcm"
    incoming.write_bytes(b"y" * 300)
    received = spool.store_instance("DUET", "1", "1.1", incoming, "R", "MLO")
    assert received.stored and not incoming.exists()
    (instance,) = spool.instances(received.study_id)
    assert instance.path.read_bytes() == b"y" * 300 and instance.bytes == 300
    assert spool.used_bytes() == 300


def test_leftovers_of_an_aborted_transfer_are_removed_at_start(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    (spool.incoming / "tmpabc.dcm").write_bytes(b"partial")
    spool.close()
    assert list(make_spool(tmp_path).incoming.iterdir()) == []
