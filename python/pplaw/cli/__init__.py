"""The ``pplaw`` command line: one sub-command per stage (see ``pplaw --help``)."""
