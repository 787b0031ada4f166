"""`python -m fastsoftmax.bench`: fastsoftmax against every installed peer (see --help)."""

from .cli import main

raise SystemExit(main())
