"""The key management engine. Never imports azure.functions; builds no clients at import."""
