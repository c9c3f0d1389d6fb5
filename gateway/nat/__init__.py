"""NAT traversal the gateway offers its listeners: a STUN Binding responder
and short-lived TURN credentials (see docs/websocket.md, ``welcome``)."""
