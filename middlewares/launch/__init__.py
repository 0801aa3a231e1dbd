"""Launching a deployment's processes: CPU caps that make each node a machine of fixed capacity."""
