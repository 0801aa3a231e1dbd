"""Starting and stopping things: the launcher CLI, deployments, supervised processes, brokers."""
