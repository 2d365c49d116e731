"""CITATION.cff is a valid Citation File Format 1.2.0 file: checked against the format's own
JSON schema (tests/data/cff-1.2.0.schema.json, the schema published at
https://citation-file-format.github.io/1.2.0/schema.json, CC-BY-4.0, as shipped in the
cffconvert 2.0.0 wheel)."""

import datetime
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((Path(__file__).parent / "data" / "cff-1.2.0.schema.json").read_text())


def _as_cff_json(value):
    """YAML reads a bare date as a date; the schema, like the format's tools, wants the
    ISO string."""
    if isinstance(value, dict):
        return {k: _as_cff_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_cff_json(v) for v in value]
    return value.isoformat() if isinstance(value, datetime.date) else value


def _validate(citation: dict) -> None:
    jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(
        _as_cff_json(citation))


def test_citation_file_validates_against_the_cff_1_2_schema():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    _validate(citation)
    # the same file without its authors, or with a licence CFF does not know, is refused
    for broken in ({k: v for k, v in citation.items() if k != "authors"},
                   {**citation, "license": "not-a-licence"}):
        with pytest.raises(jsonschema.ValidationError):
            _validate(broken)
