from ocrtui.cli import main

raise SystemExit(main())
