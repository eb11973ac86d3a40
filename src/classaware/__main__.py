from classaware.cli import main

raise SystemExit(main())
