"""What the gateway tells its operators: metrics (``metrics``), and — per request —
the log line and the request log."""
