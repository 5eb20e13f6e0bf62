"""`python -m lintas_faults`."""

from lintas_faults.cli import main

raise SystemExit(main())
