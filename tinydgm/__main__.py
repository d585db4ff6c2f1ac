"""`python -m tinydgm` is the `tinydgm` command."""
from tinydgm.cli import main

raise SystemExit(main())
