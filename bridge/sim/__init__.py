"""Protocol-faithful simulators of what the bridge talks to: a Hubitat Elevation hub and a Splunk HEC."""
