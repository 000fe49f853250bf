"""A site admitted while the job waits: named in the coordinator's participants file.

What the operator does for a Participant created in the job's own cluster after the job (the
``<job>-coordinator-participants`` ConfigMap, mounted as a file): a real coordinator process
refuses the name until the file lists it, then admits it, and the site's real trainer takes
part in every round.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml

from fedcare.pki import issue_client_cert
from fedcare.spec import InlineParticipant, Phase
from tests.integration.actors import join_request, start_job, stub_for, wait_for
from tests.integration.conftest import BC_FEATURES, JobFactory


def test_a_site_listed_in_the_participants_file_is_admitted(
    make_job: JobFactory, tmp_path: Path, breast_cancer_sites: list[Path]
) -> None:
    manifest = make_job(sites=breast_cancer_sites[:2], rounds=2, minParticipants=3)
    names = tmp_path / "participants" / "names"
    run = start_job(manifest, tmp_path / "work", participants_file=names)
    try:
        for p in run.job.spec.participants:
            run.start_trainer(p)
        late = issue_client_cert(run.ca, tmp_path / "work" / "pki", "north-clinic")
        stub = stub_for(run, late)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Join(join_request(len(BC_FEATURES)), timeout=10)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert wait_for(run, "s.ready_participants == 2").phase is Phase.WAITING

        names.parent.mkdir()
        names.write_text("# created after the job\nnorth-clinic\n")
        s = wait_for(run, "'north-clinic' in [p.name for p in s.participants]", timeout=30)
        assert s.current_round == 0  # admitted while waiting; nothing ran without it
        run.client_certs["north-clinic"] = late
        data = yaml.safe_load(manifest.read_text())["spec"]["participants"][0]["data"]
        data["path"] = str(breast_cancer_sites[2])
        run.start_trainer(InlineParticipant.model_validate({"name": "north-clinic", "data": data}))
        final = run.follow()
        run.reap()
    finally:
        run.stop()
    assert final.phase is Phase.SUCCEEDED, final.message
    assert [r.participants for r in final.rounds] == [3, 3]
    assert {p.name: p.rounds_contributed for p in final.participants}["north-clinic"] == 2
