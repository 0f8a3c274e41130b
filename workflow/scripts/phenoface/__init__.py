"""phenoface: library code behind the phenoface Snakemake workflow.

Every module here is pure Python (no Snakemake imports) so it can be tested
and reused on its own. Entry scripts in ``workflow/scripts`` are thin wrappers.
"""

__version__ = "0.1.0"
