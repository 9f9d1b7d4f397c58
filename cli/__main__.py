from streamcore.cli.main import main

raise SystemExit(main())
