"""Tasks: what each training objective adds to the shared body (heads, losses, data)."""
