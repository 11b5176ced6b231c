"""What talks to models outside the process: the OpenAI-protocol client and the persistent,
content-addressed cache of their answers."""
