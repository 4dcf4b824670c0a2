"""Records of more than six fields are keyword-only (``@dataclass(kw_only=True)``): built positionally, two adjacent
fields of one type can be swapped and still type-check; keyword-only, a positional call is a TypeError. The field
order stays as declared (``asdict``, the results codec and ``metrics.json`` follow it)."""
import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import reportgen

MAX_POSITIONAL_FIELDS = 6

def _modules():
    """Every module of the package, imported (none skipped: a record in a module left out would go unchecked)."""
    return [importlib.import_module(found.name)
            for found in pkgutil.walk_packages(reportgen.__path__, reportgen.__name__ + ".")]


def _records() -> dict:
    """Qualified name -> class, for every dataclass defined in reportgen with more than six fields."""
    out = {}
    for module in _modules():
        for value in vars(module).values():
            if (inspect.isclass(value) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__
                    and len(dataclasses.fields(value)) > MAX_POSITIONAL_FIELDS):
                out[f"{value.__module__}.{value.__qualname__}"] = value
    return out


def _keyword_only(cls) -> bool:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # after self
    return all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in parameters)


RECORDS = _records()


def test_the_scan_finds_the_records_it_is_about():
    # A scan that imported nothing would pass every check below.
    for name in ("reportgen.results.schema.Cost", "reportgen.scoring.rules.BackboneFinding",
                 "reportgen.pipeline.request.RunRequest", "reportgen.inputs.images.ImageRecord",
                 "reportgen.inputs.listing.ListedImage", "reportgen.results.schema.TaskRun",
                 "reportgen.inputs.config.AnalysisConfig"):
        assert name in RECORDS
    assert len(RECORDS) > 40


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_record_of_more_than_six_fields_is_keyword_only(name):
    cls = RECORDS[name]
    assert _keyword_only(cls), f"{name} has {len(dataclasses.fields(cls))} fields: use @dataclass(kw_only=True)"
    with pytest.raises(TypeError, match="positional argument"):
        cls(*range(len(dataclasses.fields(cls))))

