"""Snakemake entry: hash every listed image and stop on duplicate content."""

import logging

from phenoface.errors import PhenofaceError
from phenoface.io import write_table
from phenoface.runtime import setup_logging
from phenoface.sheets import file_sha256, find_duplicate_content, read_all_sheets


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    table = read_all_sheets(snakemake.input.cases, snakemake.input.pool, snakemake.params.others)
    digests = []
    for row in table.itertuples():
        try:
            digests.append(file_sha256(row.path))
        except OSError as error:
            raise PhenofaceError(
                f"{row.sheet} sheet row {row.row}, column image: cannot read {row.path} ({error}). "
                "Fix the path or the file's permissions."
            ) from None
    find_duplicate_content(table, digests)
    logging.info("%d images, all with distinct content", len(table))
    write_table(
        snakemake.output.table,
        table[["image_id", "sheet", "row", "path"]].assign(sha256=digests),
    )

if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
