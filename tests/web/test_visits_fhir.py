"""``GET /api/v1/visits/<id>/fhir``: a whole visit as a FHIR R4 DiagnosticReport (validated with
``fhir.resources``): per eye the outcome's grade, maculopathy and gradability, the grader's
grade once a grader decided, the policy's recommendation; owned like every visit route."""

from __future__ import annotations

from tests.helpers.web import api_token, bearer, register
from tests.web.test_visits import people, post_visit, set_role


def _bundle(client, token, vid):
    from fhir.resources.R4B.bundle import Bundle

    response = client.get(f"/api/v1/visits/{vid}/fhir", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/fhir+json"
    bundle = Bundle.model_validate(response.get_json())
    report, *observations = (entry.resource for entry in bundle.entry)
    assert report.get_resource_type() == "DiagnosticReport"
    return report, {o.id: o for o in observations}


def test_a_visit_as_fhir_follows_the_outcome_and_the_grader(web_app):
    from retinascreen.serving.fhir import GRADE_LOINC_ANSWER, GRADE_SNOMED

    clients = people(web_app)
    nurse, nurse_token = clients["nurse"]
    grace, grace_token = clients["grace"]
    south, south_token = clients["south"]
    visit = post_visit(nurse, nurse_token).get_json()
    vid, eyes = visit["id"], visit["outcome"]["eyes"]

    report, obs = _bundle(nurse, nurse_token, vid)
    assert report.subject.identifier.value == "PX-0042"
    assert str(report.effectiveDateTime) == "2026-11-30"
    assert report.conclusion.lower().startswith(visit["outcome"]["summary"])
    assert visit["outcome"]["text"] in report.conclusion
    assert obs["recommendation"].valueString == report.conclusion
    assert len(report.result) == len(obs)
    for eye, site in (("right", "18944008"), ("left", "8966001")):
        final = eyes[eye]["final"]
        grade = obs[f"{eye}-grade"]
        assert grade.bodySite.coding[0].code == site and grade.performer is None
        assert obs[f"{eye}-gradable"].valueBoolean == final["gradable"]
        if final["gradable"]:
            assert grade.component[0].valueInteger == final["grade"]
            codes = {c.code for c in grade.valueCodeableConcept.coding}
            assert GRADE_LOINC_ANSWER[final["grade"]][0] in codes
            present = obs[f"{eye}-maculopathy"].valueCodeableConcept.coding[0].code
            assert present == ("52101004" if final["maculopathy"] else "272519000")

    # ownership: another site's clinic user and no token get nothing; the grader (queued
    # visit) and an administrator see it
    assert south.get(f"/api/v1/visits/{vid}/fhir", headers=bearer(south_token)).status_code == 404
    assert nurse.get(f"/api/v1/visits/{vid}/fhir").status_code == 401
    assert (
        nurse.get(f"/api/v1/visits/{'0' * 32}/fhir", headers=bearer(nurse_token)).status_code == 404
    )
    admin = web_app.test_client()
    register(admin, "chief")
    set_role(web_app, "chief", "admin")
    _bundle(admin, api_token(admin, "chief"), vid)

    # a grader decides the right eye: severe NPDR, by grace, now in the report
    review = {"eyes": {"right": {"gradable": True, "grade": 3}}, "note": "IRMA"}
    answer = grace.post(f"/api/v1/visits/{vid}/reviews", headers=bearer(grace_token), json=review)
    assert answer.status_code == 201, answer.get_json()
    report, obs = _bundle(grace, grace_token, vid)
    right = obs["right-grade"]
    assert right.component[0].valueInteger == 3
    assert GRADE_SNOMED[3][0] in {c.code for c in right.valueCodeableConcept.coding}
    assert [p.display for p in right.performer] == ["grader grace"]
    assert obs["left-grade"].performer is None  # the machine's grade still
    assert report.conclusion.startswith("Refer (soon)")
