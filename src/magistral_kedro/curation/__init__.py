"""Curation as plain functions (no Kedro): source mappings, the verifiability filter, code-test
repair, translation, and the difficulty filter by pass rate (docs/recipe.md, section 4)."""
