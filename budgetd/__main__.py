from .cli.daemon import main

raise SystemExit(main())
