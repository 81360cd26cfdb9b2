from helpctl.cli import main

raise SystemExit(main())
