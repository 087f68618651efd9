from memoracle.cli import main

raise SystemExit(main())
