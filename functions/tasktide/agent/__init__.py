"""The chat agent (`tasktide-agent`): OpenAI Agents SDK on the task API's MCP tools.

Consumes: `POST /api/{user}/chat` ({"message", "conversation_id"?}) with the user's JWT; the MCP tools at the
task API's `/mcp` (through Dapr service invocation on a cluster, directly in the embedded default); an
OpenAI-compatible model provider. Emits: the agent's reply, and the conversation saved in the state store.
"""
