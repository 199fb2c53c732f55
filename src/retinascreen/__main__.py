from retinascreen.cli import main

raise SystemExit(main())
