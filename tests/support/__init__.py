"""What the tests stand on: local servers, tiny models, the workflow runner."""
