"""Request parameters are declared once and reach the OpenAPI schema the same way everywhere."""

from __future__ import annotations

import pytest

from model.metadata import Metadata
from server.params import METADATA_FIELDS, build_params


@pytest.fixture(scope="module")
def openapi(client) -> dict:
    return client.get("/openapi.json").json()


def query_params(openapi: dict, path: str) -> dict[str, dict]:
    return {p["name"]: p["schema"] for p in openapi["paths"][path]["get"]["parameters"]}


def test_metadata_is_the_same_on_every_route_and_in_the_body(openapi):
    routes = [
        "/tiles/{query}/{z}/{x}/{y}.png",
        "/uncertainty/{z}/{x}/{y}.png",
        "/legend",
        "/queries/{query_id}/tilejson.json",
    ]
    schemas = [query_params(openapi, r) for r in routes]
    for name in METADATA_FIELDS:
        assert all(s[name] == schemas[0][name] for s in schemas), name
    month = schemas[0]["month"]["anyOf"][0]
    assert (month["minimum"], month["maximum"]) == (1, 12)
    body = openapi["components"]["schemas"]["MetadataBody"]
    assert set(body["properties"]) == set(METADATA_FIELDS)
    assert body["additionalProperties"] is False
    assert body["properties"]["hour"]["anyOf"][0]["maximum"] == 23
    sources = openapi["components"]["schemas"]["AudioSource"]["enum"]
    assert sorted(sources) == ["aporee", "freesound", "inat", "yfcc"]


def test_one_table_builds_both_forms():
    p = build_params(["a", "b"], ["m"], [1, 5], (4, 12))
    q = p.metadata(month=3, hour=None, asource=None, tsource=None, location=False)
    assert q.metadata == Metadata(month=3, location=False)
    body = p.metadata_body.model_validate({"asource": "b", "hour": 0})
    assert body.metadata == Metadata(hour=0, asource="b")
    with pytest.raises(ValueError):
        p.metadata_body.model_validate({"month": 13})
    with pytest.raises(ValueError):
        p.metadata_body.model_validate({"weather": "rain"})
    assert [int(z) for z in p.psm_zoom] == [1, 5]


def test_a_bad_metadata_value_is_one_clear_422(client):
    r = client.get("/uncertainty/8/55/98.png?month=13")
    assert r.status_code == 422
    assert r.json() == {"detail": "query month: Input should be less than or equal to 12"}
    r = client.get("/uncertainty/8/55/98.png?asource=radio")
    assert r.status_code == 422 and r.json()["detail"].startswith("query asource: Input should be")
