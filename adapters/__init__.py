"""streamcore.adapters: trio transports that drive the sans-IO core over real sockets."""
