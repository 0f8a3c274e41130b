"""Rule check_image_content: hash every listed image and stop on duplicate content."""

import logging

from phenoface.errors import PhenofaceError
from phenoface.io import write_table
from phenoface.sheets import file_sha256, find_duplicate_content, read_all_sheets


def run(inputs: dict, outputs: dict, params) -> None:
    table = read_all_sheets(inputs["cases"], inputs["pool"], params.others)
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
        outputs["table"],
        table[["image_id", "sheet", "row", "path"]].assign(sha256=digests),
    )


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
