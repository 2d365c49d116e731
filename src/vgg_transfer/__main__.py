from vgg_transfer.cli import main

raise SystemExit(main())
