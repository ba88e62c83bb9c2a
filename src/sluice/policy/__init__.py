"""Who may ask, and how much: keys, sessions, rate limits, budgets."""
