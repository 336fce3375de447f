"""PyTorch fixture generators for tapegrad's parity tests.

Every module in this package (except `common`) registers cases with the
`@fixture(name)` decorator from `fixturegen.common`; `tests/make_fixtures.py`
imports them all, runs the selected cases and writes one
`tests/fixtures/<name>.safetensors` per case. To add cases, add a module here:
nothing else needs editing. See tests/README.md for the conventions.
"""
