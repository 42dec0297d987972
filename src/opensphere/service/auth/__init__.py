"""Who is calling and what they may do: API tokens, roles and the permission check."""
