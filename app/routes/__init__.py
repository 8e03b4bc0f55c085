"""The server's routes, one module per input kind; handlers stay thin and call the core."""
