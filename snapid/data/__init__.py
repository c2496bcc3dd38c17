"""The data layer: import, inspect, prepare, demo data."""
