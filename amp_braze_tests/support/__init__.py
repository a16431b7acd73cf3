"""What the tests import: one module per job (servers, configurations, metadata, a brand, ...).

Fixtures live in the conftest.py files; everything a test module imports lives here, so no test
module imports another and no helper is written twice.
"""
