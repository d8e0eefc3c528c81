from bridge.sim.homey.cli import main

main()
