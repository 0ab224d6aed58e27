"""The SQL migrations, shipped in the wheel and read with `importlib.resources`."""

#: migration set name -> folder inside this package. The core set is always applied; the others
#: are chosen with `--with` or `C9_SYNC_WITH`.
SETS: dict[str, str] = {"core": ".", "work-tracking": "work_tracking"}
