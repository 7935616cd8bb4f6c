from dpda.cli.main import main

raise SystemExit(main())
