"""Tests of the simulators in bridge.sim."""
