"""The ``k3s`` and ``k3s-reset`` components: a k3s cluster on the k3s_servers and k3s_agents."""
