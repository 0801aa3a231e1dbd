"""Starting and stopping things: the launcher CLI, deployments, supervised processes, brokers,
and the CPU caps that make each node a machine of fixed capacity."""
