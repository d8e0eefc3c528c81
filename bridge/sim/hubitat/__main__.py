"""``python -m bridge.sim.hubitat``: run a demo hub with random device activity until Ctrl-C."""

from bridge.sim.hubitat import main

main()
