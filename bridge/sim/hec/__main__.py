"""``python -m bridge.sim.hec``: run the Splunk HEC simulator until Ctrl-C."""

from bridge.sim.hec import main

raise SystemExit(main())
