"""HTTP edges shared by the API and the function servers: the inbound request-body guard (`bodyguard`)
and the outbound webhook egress policy (`egress`)."""
