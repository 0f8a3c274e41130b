"""The one exception type for errors a user can cause and fix."""


class PhenofaceError(Exception):
    """A user-fixable problem: bad sheet, missing file, too few controls, ...

    The message must name the file, row or stratum concerned and say what
    to do about it. Entry scripts let it propagate so Snakemake shows it.
    """
