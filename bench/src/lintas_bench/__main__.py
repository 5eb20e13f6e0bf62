"""`python -m lintas_bench`."""

from lintas_bench.cli import main

raise SystemExit(main())
