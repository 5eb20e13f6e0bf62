"""``python -m lintas_deploy``: same as the ``lintas-stack`` command."""

from lintas_deploy.cli import main

raise SystemExit(main())
