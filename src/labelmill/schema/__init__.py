"""The label schema: which controls a project's annotators fill in, and what a valid answer is.

A pure core (pydantic and the standard library only), shared by the API, the importers,
the quality engine and the model-assist code so they all agree on one value shape per
control type (DESIGN.md, "Annotation values").

    schema = parse_schema({"controls": [{"name": "label", "type": "choices",
                                         "source": "text", "classes": ["pos", "neg"]}]})
    validate_value(schema, {"label": "pos"})   # -> []
"""

from labelmill.schema.controls import (
    CONTROL_TYPES,
    PAIRWISE_CHOICES,
    BoxesControl,
    ChoicesControl,
    ClassedControl,
    Control,
    KeypointsControl,
    LabelSchema,
    MultiChoicesControl,
    PairwiseControl,
    PolygonsControl,
    RankingControl,
    RatingControl,
    RelationsControl,
    SegmentsControl,
    SpansControl,
    TextControl,
    TracksControl,
    TranscriptControl,
)
from labelmill.schema.errors import AnnotationValueError, SchemaError, ValueIssue
from labelmill.schema.parsing import json_schema, parse_schema, schema_to_json
from labelmill.schema.utils import CATEGORICAL_TYPES, categorical_controls, control_types, empty_value
from labelmill.schema.values import EDGE_TOLERANCE, check_value, validate_value

__all__ = [
    "CATEGORICAL_TYPES",
    "CONTROL_TYPES",
    "EDGE_TOLERANCE",
    "PAIRWISE_CHOICES",
    "AnnotationValueError",
    "BoxesControl",
    "ChoicesControl",
    "ClassedControl",
    "Control",
    "KeypointsControl",
    "LabelSchema",
    "MultiChoicesControl",
    "PairwiseControl",
    "PolygonsControl",
    "RankingControl",
    "RatingControl",
    "RelationsControl",
    "SchemaError",
    "SegmentsControl",
    "SpansControl",
    "TextControl",
    "TracksControl",
    "TranscriptControl",
    "ValueIssue",
    "categorical_controls",
    "check_value",
    "control_types",
    "empty_value",
    "json_schema",
    "parse_schema",
    "schema_to_json",
    "validate_value",
]
